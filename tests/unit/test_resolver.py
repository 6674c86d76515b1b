"""One test (at least) per rule of the loader model (anchors.md section 3)."""

from __future__ import annotations

import pytest

from tests.support.memview import MemoryView
from torchdll.apisets import ApiSetEntry, ApiSetSchema
from torchdll.model import Candidate, LoadContext, Machine, Rule, Skip
from torchdll.resolver import normalize_name, resolve, search_dirs

X64 = Machine.AMD64
APP = "C:\\Python311"
SYS32 = "C:\\Windows\\System32"
VENV = "C:\\proj\\.venv"
TORCH_LIB = VENV + "\\Lib\\site-packages\\torch\\lib"


def ctx(**kw: object) -> LoadContext:
    base: dict[str, object] = dict(app_dir=APP, cwd="C:\\work", path=("C:\\onpath",))
    base.update(kw)
    return LoadContext(**base)  # type: ignore[arg-type]


def everywhere(name: str) -> MemoryView:
    """``name`` present in every folder any mode can search."""
    dirs = [APP, SYS32, "C:\\Windows\\System", "C:\\Windows", "C:\\work", "C:\\onpath",
            "C:\\user1", "C:\\user2", "C:\\setdll", TORCH_LIB, "C:\\altered"]
    return MemoryView({f"{d}\\{name}": X64 for d in dirs})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("c10", "c10.dll"),
        ("c10.dll", "c10.dll"),
        ("c10.", "c10"),
        ("mkl_core.1.dll", "mkl_core.1.dll"),
        ("lib/x", "lib\\x.dll"),
        ("C:/a/b.DLL", "C:\\a\\b.DLL"),
    ],
)
def test_normalize_name(given: str, expected: str) -> None:
    assert normalize_name(given) == expected


def test_name_without_extension_finds_dll_case_insensitively() -> None:
    view = MemoryView({f"{APP}\\MSVCP140.DLL": X64})
    res = resolve("msvcp140", ctx(), view)
    assert res.path == f"{APP}\\MSVCP140.DLL"
    assert res.rule is Rule.APP_DIR


def test_trailing_dot_means_no_extension() -> None:
    view = MemoryView({f"{APP}\\noext": X64, f"{APP}\\noext.dll": X64})
    assert resolve("noext.", ctx(), view).path == f"{APP}\\noext"
    assert resolve("noext", ctx(), view).path == f"{APP}\\noext.dll"


# -- full paths -----------------------------------------------------------------------------


def test_full_path_loads_that_file_even_if_same_name_is_earlier() -> None:
    view = MemoryView({f"{APP}\\c10.dll": X64, f"{TORCH_LIB}\\c10.dll": X64})
    res = resolve(f"{TORCH_LIB}\\c10.dll", ctx(), view, flags=0x1100)
    assert (res.path, res.rule, res.error) == (f"{TORCH_LIB}\\c10.dll", Rule.FULL_PATH, None)


def test_full_path_missing_is_126() -> None:
    res = resolve(f"{TORCH_LIB}\\c10.dll", ctx(), MemoryView(), flags=0x1100)
    assert res.error == 126 and res.path is None
    assert res.candidates == (Candidate(f"{TORCH_LIB}\\c10.dll", Rule.FULL_PATH, Skip.ABSENT),)


def test_full_path_wrong_machine_is_193_not_skipped() -> None:
    view = MemoryView({f"{TORCH_LIB}\\c10.dll": Machine.I386})
    res = resolve(f"{TORCH_LIB}\\c10.dll", ctx(), view, flags=0x1100)
    assert res.error == 193
    assert res.candidates[0].outcome is Skip.WRONG_MACHINE


def test_full_path_not_an_image_is_193() -> None:
    view = MemoryView({f"{TORCH_LIB}\\c10.dll": None})
    assert resolve(f"{TORCH_LIB}\\c10.dll", ctx(), view, flags=0x1100).error == 193


def test_full_path_already_loaded_from_that_path() -> None:
    path = f"{TORCH_LIB}\\c10.dll"
    res = resolve(path, ctx(loaded={"c10.dll": path}), MemoryView())
    assert res.rule is Rule.LOADED and res.path == path


# -- API sets -------------------------------------------------------------------------------


def test_api_set_crt_maps_to_ucrtbase_known_dll() -> None:
    c = ctx(known_dlls={"ucrtbase.dll": "ucrtbase.dll"})
    res = resolve("api-ms-win-crt-runtime-l1-1-0.dll", c, MemoryView(), importer=f"{TORCH_LIB}\\c10.dll")
    assert res.rule is Rule.API_SET
    assert res.host == "ucrtbase.dll"
    assert res.path == f"{SYS32}\\ucrtbase.dll"


def test_api_set_ignores_app_local_copy_of_contract_dll() -> None:
    # Windows 10+: the system UCRT is always used, never an app-local api-ms-win-crt-*.dll.
    view = MemoryView({f"{APP}\\api-ms-win-crt-runtime-l1-1-0.dll": X64, f"{SYS32}\\ucrtbase.dll": X64})
    res = resolve("api-ms-win-crt-runtime-l1-1-0.dll", ctx(), view, importer="C:\\x\\a.dll")
    assert res.path == f"{SYS32}\\ucrtbase.dll"


def test_api_set_version_suffix_is_not_compared() -> None:
    schema = ApiSetSchema({"api-ms-win-core-synch-l1-2": ApiSetEntry("api-ms-win-core-synch-l1-2-1", "kernelbase.dll")})
    view = MemoryView({f"{SYS32}\\kernelbase.dll": X64})
    res = resolve("api-ms-win-core-synch-l1-2-0.dll", ctx(), view, importer="C:\\a.dll", apisets=schema)
    assert res.path == f"{SYS32}\\kernelbase.dll"


def test_api_set_importer_exception() -> None:
    schema = ApiSetSchema({"api-ms-win-core-foo-l1-1": ApiSetEntry("x", "kernel32.dll", {"kernel32.dll": "kernelbase.dll"})})
    view = MemoryView({f"{SYS32}\\kernel32.dll": X64, f"{SYS32}\\kernelbase.dll": X64})
    a = resolve("api-ms-win-core-foo-l1-1-0", ctx(), view, importer="C:\\app\\a.dll", apisets=schema)
    k = resolve("api-ms-win-core-foo-l1-1-0", ctx(), view, importer=f"{SYS32}\\KERNEL32.dll", apisets=schema)
    assert a.host == "kernel32.dll" and k.host == "kernelbase.dll"


def test_api_set_present_but_unmapped_fails_126() -> None:
    schema = ApiSetSchema({"ext-ms-win-gone-l1-1": ApiSetEntry("ext-ms-win-gone-l1-1-0", None)})
    view = MemoryView({f"{APP}\\ext-ms-win-gone-l1-1-0.dll": X64})
    res = resolve("ext-ms-win-gone-l1-1-0.dll", ctx(), view, importer="C:\\a.dll", apisets=schema)
    assert res.error == 126 and res.rule is Rule.API_SET


def test_unknown_api_set_name_is_searched_as_a_file() -> None:
    view = MemoryView({f"{APP}\\api-ms-win-made-up-l1-1-0.dll": X64})
    res = resolve("api-ms-win-made-up-l1-1-0.dll", ctx(), view, importer="C:\\a.dll", apisets=ApiSetSchema({}))
    assert res.rule is Rule.APP_DIR
    assert any("not in the API set schema" in n for n in res.notes)


# -- loaded modules and KnownDLLs ----------------------------------------------------------


def test_loaded_module_with_same_base_name_wins_over_dll_load_dir() -> None:
    old = "C:\\Qt\\bin\\msvcp140.dll"
    view = MemoryView({f"{TORCH_LIB}\\msvcp140.dll": X64, f"{SYS32}\\msvcp140.dll": X64})
    res = resolve("MSVCP140.dll", ctx(loaded={"msvcp140.dll": old}), view, flags=0x1100,
                  importer=f"{TORCH_LIB}\\c10.dll", load_dir=TORCH_LIB)
    assert (res.path, res.rule) == (old, Rule.LOADED)


def test_known_dll_wins_over_app_dir() -> None:
    view = MemoryView({f"{APP}\\kernel32.dll": X64, f"{SYS32}\\kernel32.dll": X64})
    res = resolve("KERNEL32.dll", ctx(known_dlls={"kernel32.dll": "kernel32.dll"}), view)
    assert (res.path, res.rule) == (f"{SYS32}\\kernel32.dll", Rule.KNOWN_DLL)


# -- mode A: LOAD_LIBRARY_SEARCH_* ----------------------------------------------------------


def _order(flags: int, **kw: object) -> list[Rule]:
    return [r for r, _ in search_dirs(ctx(user_dirs=("C:\\user1", "C:\\user2"), **kw), flags, TORCH_LIB)]


def test_mode_a_0x1100_order_and_no_path_no_cwd() -> None:
    assert _order(0x1100) == [Rule.DLL_LOAD_DIR, Rule.APP_DIR, Rule.USER_DIR, Rule.USER_DIR, Rule.SYSTEM32]


def test_mode_a_0x1000_has_no_dll_load_dir() -> None:
    assert _order(0x1000) == [Rule.APP_DIR, Rule.USER_DIR, Rule.USER_DIR, Rule.SYSTEM32]


@pytest.mark.parametrize(
    ("flags", "rules"),
    [
        (0x200, [Rule.APP_DIR]),
        (0x400, [Rule.USER_DIR, Rule.USER_DIR]),
        (0x800, [Rule.SYSTEM32]),
        (0x4000, [Rule.SYSTEM32]),
        (0x100 | 0x800, [Rule.DLL_LOAD_DIR, Rule.SYSTEM32]),
    ],
)
def test_mode_a_single_flags(flags: int, rules: list[Rule]) -> None:
    assert _order(flags) == rules


def test_mode_a_user_dirs_include_set_dll_directory() -> None:
    assert _order(0x400, dll_directory="C:\\setdll") == [Rule.USER_DIR, Rule.USER_DIR, Rule.DLL_DIRECTORY]


def test_mode_a_resolution_ignores_path_entry() -> None:
    view = MemoryView({"C:\\onpath\\dep.dll": X64})
    res = resolve("dep.dll", ctx(), view, flags=0x1100, importer=f"{TORCH_LIB}\\x.dll", load_dir=TORCH_LIB)
    assert res.error == 126
    assert [c.rule for c in res.candidates] == [Rule.DLL_LOAD_DIR, Rule.APP_DIR, Rule.SYSTEM32]


def test_mode_a_dll_load_dir_first() -> None:
    res = resolve("dep.dll", ctx(user_dirs=("C:\\user1",)), everywhere("dep.dll"), flags=0x1100,
                  importer=f"{TORCH_LIB}\\x.dll", load_dir=TORCH_LIB)
    assert res.rule is Rule.DLL_LOAD_DIR and res.path == f"{TORCH_LIB}\\dep.dll"


def test_process_default_flags_apply_when_call_has_none() -> None:
    c = ctx(default_flags=0x800)
    res = resolve("dep.dll", c, everywhere("dep.dll"))
    assert res.rule is Rule.SYSTEM32


def test_user_dirs_are_searched_last_added_first_and_ambiguity_is_noted() -> None:
    # Wine's conformance test test_LoadLibraryEx_search_flags (also run on Windows) expects the
    # folder added last to win; Microsoft leaves the order unspecified, so it is noted.
    res = resolve("dep.dll", ctx(user_dirs=("C:\\user1", "C:\\user2")),
                  MemoryView({"C:\\user1\\dep.dll": X64, "C:\\user2\\dep.dll": X64}), flags=0x400)
    assert (res.rule, res.path) == (Rule.USER_DIR, "C:\\user2\\dep.dll")
    assert any("does not specify" in n for n in res.notes)


def test_altered_search_after_set_default_dll_directories() -> None:
    c = ctx(default_flags=0x1000)
    assert resolve("foo.dll", c, everywhere("foo.dll"), flags=0x8).error == 87
    # an absolute name: its folder, then the default directories -- no PATH
    assert _order(0x8, default_flags=0x1000) == [Rule.DLL_LOAD_DIR, Rule.APP_DIR, Rule.USER_DIR,
                                                 Rule.USER_DIR, Rule.SYSTEM32]


def test_altered_search_honours_set_dll_directory() -> None:
    assert _order(0x8, dll_directory="C:\\setdll") == [
        Rule.ALTERED_DIR, Rule.DLL_DIRECTORY, Rule.SYSTEM32, Rule.SYSTEM_DIR, Rule.WINDOWS_DIR, Rule.PATH]


# -- mode B: standard search ----------------------------------------------------------------


STANDARD = [Rule.APP_DIR, Rule.SYSTEM32, Rule.SYSTEM_DIR, Rule.WINDOWS_DIR, Rule.CWD, Rule.PATH]


def test_mode_b_safe_search_order() -> None:
    assert _order(0) == STANDARD


def test_mode_b_unsafe_search_puts_cwd_second() -> None:
    assert _order(0, safe_dll_search_mode=False) == [
        Rule.APP_DIR, Rule.CWD, Rule.SYSTEM32, Rule.SYSTEM_DIR, Rule.WINDOWS_DIR, Rule.PATH]


def test_mode_b_walks_to_path_and_records_every_candidate() -> None:
    view = MemoryView({"C:\\onpath\\dep.dll": X64})
    res = resolve("dep.dll", ctx(), view)
    assert (res.path, res.rule) == ("C:\\onpath\\dep.dll", Rule.PATH)
    assert [c.rule for c in res.candidates] == STANDARD
    assert [c.outcome for c in res.candidates] == [Skip.ABSENT] * 5 + [Skip.SELECTED]


def test_safe_current_dirs_flag_drops_cwd() -> None:
    assert Rule.CWD not in _order(0x2000)


def test_relative_path_entry_is_relative_to_cwd() -> None:
    view = MemoryView({"C:\\work\\rel\\dep.dll": X64})
    res = resolve("dep.dll", ctx(path=("rel",)), view)
    assert res.path == "C:\\work\\rel\\dep.dll" and res.rule is Rule.PATH


def test_empty_blank_and_quoted_path_entries_are_skipped() -> None:
    # The loader reads PATH literally: a quoted entry names no folder (quotes are only
    # honoured by cmd.exe), so the DLL in "C:\\quoted" is not found.
    view = MemoryView({"C:\\quoted\\dep.dll": X64, "C:\\plain\\dep.dll": X64})
    res = resolve("dep.dll", ctx(path=("", "  ", '"C:\\quoted"', "C:\\plain")), view)
    assert res.path == "C:\\plain\\dep.dll"
    assert any("quotes" in n for n in res.notes)
    assert not any("quoted" in c.path for c in res.candidates)


# -- mode C and D --------------------------------------------------------------------------


def test_mode_c_altered_search_starts_in_dll_folder() -> None:
    assert _order(0x8)[0] is Rule.ALTERED_DIR
    res = resolve("dep.dll", ctx(), everywhere("dep.dll"), flags=0x8, importer="C:\\altered\\x.dll",
                  load_dir="C:\\altered")
    assert res.rule is Rule.ALTERED_DIR


def test_mode_d_set_dll_directory_replaces_cwd() -> None:
    assert _order(0, dll_directory="C:\\setdll") == [
        Rule.APP_DIR, Rule.DLL_DIRECTORY, Rule.SYSTEM32, Rule.SYSTEM_DIR, Rule.WINDOWS_DIR, Rule.PATH]


def test_mode_d_empty_string_only_removes_cwd() -> None:
    assert _order(0, dll_directory="") == [
        Rule.APP_DIR, Rule.SYSTEM32, Rule.SYSTEM_DIR, Rule.WINDOWS_DIR, Rule.PATH]


# -- invalid parameters ---------------------------------------------------------------------


def test_altered_with_search_flags_is_87() -> None:
    res = resolve(f"{TORCH_LIB}\\c10.dll", ctx(), MemoryView(), flags=0x8 | 0x1000)
    assert res.error == 87


def test_dll_load_dir_with_bare_name_is_87() -> None:
    assert resolve("c10.dll", ctx(), everywhere("c10.dll"), flags=0x1100).error == 87


# -- architecture ---------------------------------------------------------------------------


def test_wrong_machine_is_skipped_during_search_and_search_goes_on() -> None:
    view = MemoryView({f"{APP}\\dep.dll": Machine.I386, "C:\\onpath\\dep.dll": X64})
    res = resolve("dep.dll", ctx(), view)
    assert res.path == "C:\\onpath\\dep.dll"
    assert res.candidates[0] == Candidate(f"{APP}\\dep.dll", Rule.APP_DIR, Skip.WRONG_MACHINE)


def test_only_wrong_machine_copies_is_193_after_the_whole_search() -> None:
    # oracle/odpi#49: an x86 OCI.DLL on PATH and no x64 one -> ERROR_BAD_EXE_FORMAT
    view = MemoryView({f"{APP}\\dep.dll": Machine.I386})
    res = resolve("dep.dll", ctx(), view)
    assert res.error == 193
    assert [c.rule for c in res.candidates] == STANDARD  # searched to the end first


def test_x86_process_takes_x86_copy() -> None:
    view = MemoryView({f"{APP}\\dep.dll": X64, "C:\\onpath\\dep.dll": Machine.I386})
    res = resolve("dep.dll", ctx(machine=Machine.I386), view)
    assert res.path == "C:\\onpath\\dep.dll"


def test_corrupt_candidate_stops_the_search_with_193() -> None:
    view = MemoryView({f"{APP}\\dep.dll": None, "C:\\onpath\\dep.dll": X64})
    res = resolve("dep.dll", ctx(), view)
    assert res.error == 193 and res.path is None
    assert res.candidates[-1].outcome is Skip.UNREADABLE


def test_relative_name_with_folder_is_appended_to_each_search_dir() -> None:
    view = MemoryView({"C:\\onpath\\sub\\dep.dll": X64})
    res = resolve("sub\\dep.dll", ctx(), view)
    assert res.path == "C:\\onpath\\sub\\dep.dll"
