"""Finding torch and its companions on disk without importing them (torchdll/installs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchdll.installs import (
    _sites_from_path_entry,
    _torch_requirement,
    dist_metadata,
    find_installs,
    glob_order,
    read_record,
    read_text,
)
from torchdll.testing import WindowsEnv


@pytest.fixture()
def env(tmp_path: Path) -> WindowsEnv:
    e = WindowsEnv(tmp_path)
    e.add_system()
    return e


def _find(env: WindowsEnv, **kw: object):  # type: ignore[no-untyped-def]
    snap = env.snapshot()
    return find_installs(env.view(), snap.python.sys_path, **kw)  # type: ignore[arg-type]


# -- versions ----------------------------------------------------------------------------------


def test_version_py_gives_version_local_label_and_cpu_build(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local="cpu")
    (t,) = _find(env).torch
    assert (t.version, t.base_version, t.local, t.cuda) == ("2.3.1+cpu", "2.3.1", "cpu", None)
    assert t.scope == "env" and t.site_packages == env.site_packages
    assert t.dist_info is not None and t.dist_info.endswith("torch-2.3.1+cpu.dist-info")
    assert t.pyd is not None and t.pyd.endswith("_C.cp311-win_amd64.pyd")


def test_cuda_build_reports_cuda_version_and_label(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local="cu121", cuda="12.1")
    (t,) = _find(env).torch
    assert (t.local, t.cuda) == ("cu121", "12.1")


def test_version_without_local_label(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local=None)
    (t,) = _find(env).torch
    assert (t.version, t.local) == ("2.3.1", None)


@pytest.mark.parametrize("text, version, cuda", [
    ("__version__ = \"2.5.1+cu124\"\ncuda = \"12.4\"\n", "2.5.1+cu124", "12.4"),
    ("__version__: str = '2.9.0+cpu'\ncuda: Optional[str] = None\n", "2.9.0+cpu", None),
    ("\ufeff__version__ = '2.4.0'\n", "2.4.0", None),  # a BOM must not hide the first line
    ("# generated\n__version__   =   '1.13.1+cu117'\ncuda: Optional[str] = '11.7'\n", "1.13.1+cu117", "11.7"),
])
def test_version_py_variants(env: WindowsEnv, text: str, version: str, cuda: object) -> None:
    env.add_torch("2.3.1")
    env.add_file(f"{env.site_packages}\\torch\\version.py", text)
    (t,) = _find(env).torch
    assert (t.version, t.cuda) == (version, cuda)


def test_metadata_version_when_version_py_is_missing(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local=None)
    env.host(f"{env.site_packages}\\torch\\version.py").unlink()
    (t,) = _find(env).torch
    assert t.version == "2.3.1"


def test_unknown_version_when_nothing_says(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local=None)
    env.host(f"{env.site_packages}\\torch\\version.py").unlink()
    env.host(f"{env.site_packages}\\torch-2.3.1.dist-info\\METADATA").unlink()
    (t,) = _find(env).torch
    assert t.version == "unknown" and t.local is None


def test_metadata_headers_are_case_insensitive_and_end_at_the_blank_line(env: WindowsEnv) -> None:
    dist = f"{env.site_packages}\\x-1.0.dist-info"
    env.add_file(f"{dist}\\METADATA",
                 "Metadata-Version: 2.1\nname: x\nversion: 1.0\nRequires-Dist: torch (==2.2.2)\n"
                 "Summary: folded\n  Version: 9.9\n\nVersion: 0.0 (in the description)\n"
                 "Requires-Dist: nope\n")
    assert dist_metadata(env.view(), dist) == ("1.0", ("torch (==2.2.2)",))
    assert dist_metadata(env.view(), None) == (None, ())
    assert dist_metadata(env.view(), f"{env.site_packages}\\absent.dist-info") == (None, ())


@pytest.mark.parametrize("requires, pin", [
    (["numpy", "torch (==2.2.2)", "pillow"], "torch (==2.2.2)"),
    (["torch ==2.4.0"], "torch ==2.4.0"),
    (["Torch>=2.11"], "Torch>=2.11"),
    (["torch[opt] ==2.3.1"], "torch[opt] ==2.3.1"),
    (["torch==2.3.1 ; extra == 'gpu'"], None),  # only behind an extra: not the pin
    (["torch==2.3.1 ; extra == 'gpu'", "torch>=2"], "torch>=2"),
    (["torchvision==0.18.1", "torch-tensorrt>=2"], None),
    ([], None),
])
def test_torch_requirement(requires: list[str], pin: object) -> None:
    assert _torch_requirement(requires) == pin


def test_several_dist_infos_pick_the_one_the_code_reports(env: WindowsEnv) -> None:
    # an interrupted upgrade leaves the old dist-info next to the new one
    env.add_torch("2.3.1", local=None)
    env.add_file(f"{env.site_packages}\\torch-2.2.2.dist-info\\METADATA",
                 "Metadata-Version: 2.1\nName: torch\nVersion: 2.2.2\n\n")
    env.add_file(f"{env.site_packages}\\torch-2.10.0.dist-info\\METADATA",
                 "Metadata-Version: 2.1\nName: torch\nVersion: 2.10.0\n\n")
    (t,) = _find(env).torch
    assert t.dist_info is not None and t.dist_info.endswith("torch-2.3.1.dist-info")
    # without version.py: the newest by version, not by string order (2.10.0 > 2.3.1)
    env.host(f"{env.site_packages}\\torch\\version.py").unlink()
    (t,) = _find(env).torch
    assert t.dist_info is not None and t.dist_info.endswith("torch-2.10.0.dist-info")
    assert t.version == "2.10.0"


def test_dist_info_of_torch_is_not_torchvisions(env: WindowsEnv) -> None:
    env.add_torch("2.3.1", local=None, record=False)
    env.host(f"{env.site_packages}\\torch-2.3.1.dist-info\\METADATA").unlink()
    env.host(f"{env.site_packages}\\torch-2.3.1.dist-info").rmdir()
    env.add_companion("torchvision", "0.18.1", torch_pin="torch==2.3.1")
    (t,) = _find(env).torch
    assert t.dist_info is None


# -- glob order --------------------------------------------------------------------------------


def test_glob_order_is_ntfs_collation() -> None:
    names = ["_C.pyd", "zlib.dll", "C10.dll", "asmjit.dll", "Torch_CPU.dll", "torch.dll", "[x].dll"]
    # upper-cased: ASMJIT < C10 < TORCH.DLL < TORCH_CPU < ZLIB < [X] (0x5B) < _C (0x5F)
    assert glob_order(names) == ["asmjit.dll", "C10.dll", "torch.dll", "Torch_CPU.dll", "zlib.dll",
                                 "[x].dll", "_C.pyd"]


def test_glob_order_compares_utf16_code_units() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16: it sorts before U+FF21 on NTFS,
    # although its code point is larger; 'ß' has no single-character upper case and stays.
    assert glob_order(["\uff21.dll", "\U0001F600.dll"]) == ["\U0001F600.dll", "\uff21.dll"]
    # (str.upper() would turn it into 'SS' and sort it between 'sr' and 'st')
    assert glob_order(["\u00df.dll", "st.dll", "sr.dll", "\u00e9.dll"]) == [
        "sr.dll", "st.dll", "\u00e9.dll", "\u00df.dll"]  # É is U+00C9, ß stays U+00DF


def test_torch_lib_dlls_are_listed_in_glob_order(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    env.add_dll(f"{env.site_packages}\\torch\\lib\\_extra.dll")
    env.add_dll(f"{env.site_packages}\\torch\\lib\\Zeta.dll")
    env.add_file(f"{env.site_packages}\\torch\\lib\\readme.txt", "not a dll")
    (t,) = _find(env).torch
    assert list(t.dlls) == glob_order(t.dlls)
    assert t.dlls[-2:] == ("Zeta.dll", "_extra.dll") and "readme.txt" not in t.dlls
    assert t.dlls[0] == "asmjit.dll"


def test_pyd_follows_the_interpreter_tag(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    env.add_dll(f"{env.site_packages}\\torch\\_C.cp310-win_amd64.pyd")
    (t,) = _find(env, python_version="3.11.9").torch
    assert t.pyd is not None and t.pyd.endswith("_C.cp311-win_amd64.pyd")
    (t,) = _find(env).torch  # no interpreter version: glob order
    assert t.pyd is not None and t.pyd.endswith("_C.cp310-win_amd64.pyd")
    env.host(f"{env.site_packages}\\torch\\_C.cp311-win_amd64.pyd").unlink()
    env.add_dll(f"{env.site_packages}\\torch\\_C.pyd")
    (t,) = _find(env, python_version="3.11.9").torch  # untagged beats a foreign tag
    assert t.pyd is not None and t.pyd.endswith("\\_C.pyd")
    env.host(f"{env.site_packages}\\torch\\_C.pyd").unlink()
    (t,) = _find(env, python_version="3.11.9").torch  # only the wrong tag: still reported
    assert t.pyd is not None and t.pyd.endswith("_C.cp310-win_amd64.pyd")


# -- where installs are found --------------------------------------------------------------------


def test_user_site_torch_has_user_scope_and_is_primary(tmp_path: Path) -> None:
    env = WindowsEnv(tmp_path, venv=False)
    env.add_system()
    snap = env.snapshot()
    user_site = snap.python.user_site
    assert user_site is not None
    env.add_torch("2.3.1", site_packages=user_site)
    env.add_torch("2.2.2", local=None)  # the base interpreter's own site-packages
    sys_path = (env.cwd, user_site, env.site_packages)
    inst = find_installs(env.view(), sys_path, user_site=user_site)
    assert [(t.version, t.scope) for t in inst.torch] == [("2.3.1+cpu", "user"), ("2.2.2", "env")]
    primary = inst.primary()
    assert primary is not None and primary.scope == "user"
    # spelled differently in sys.path (case, trailing slash): still the user site, found once
    inst = find_installs(env.view(), (user_site.upper() + "\\", env.site_packages), user_site=user_site)
    assert [t.scope for t in inst.torch] == ["user", "env"]


def test_user_site_not_scanned_when_disabled(env: WindowsEnv) -> None:
    snap = env.snapshot()
    assert snap.python.user_site is not None and not snap.python.user_site_enabled
    env.add_torch("2.3.1", site_packages=snap.python.user_site)
    assert _find(env).torch == ()


def test_other_environments_are_found_from_path_entries(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    other_venv = "C:\\Users\\dev\\old\\.venv\\Lib\\site-packages"
    conda_env = "C:\\miniconda3\\envs\\ml\\Lib\\site-packages"
    user310 = "C:\\Users\\dev\\AppData\\Roaming\\Python\\Python310\\site-packages"
    env.add_torch("2.2.2", site_packages=other_venv, local=None)
    env.add_companion("torchvision", "0.17.2", site_packages=other_venv)
    env.add_torch("2.1.0", site_packages=conda_env, local="cu121", cuda="12.1")
    env.add_torch("2.0.1", site_packages=user310, local=None)
    entries = [other_venv + "\\torch\\lib\\", "C:/miniconda3/envs/ml/Library/bin",
               '"C:\\Users\\dev\\AppData\\Roaming\\Python\\Python310\\Scripts"',
               "C:\\Windows\\system32", env.site_packages + "\\torch\\lib"]
    inst = _find(env, path_entries=entries)
    assert [(t.version, t.scope) for t in inst.torch] == [
        ("2.3.1+cpu", "env"), ("2.2.2", "other"), ("2.1.0+cu121", "other"), ("2.0.1", "other")]
    primary = inst.primary()
    assert primary is not None and primary.version == "2.3.1+cpu"
    assert inst.companions_of(primary) == ()  # the other venv's torchvision is not importable here
    other = inst.torch[1]
    assert [c.version for c in inst.companions_of(other)] == ["0.17.2"]


def test_sites_from_path_entry() -> None:
    assert _sites_from_path_entry("C:\\e\\Lib\\site-packages\\torch\\lib") == ["C:\\e\\Lib\\site-packages"]
    assert _sites_from_path_entry(' "C:\\conda\\Library\\bin\\" ') == ["C:\\conda\\Lib\\site-packages"]
    assert _sites_from_path_entry("C:\\Python311\\Scripts") == [
        "C:\\Python311\\Lib\\site-packages", "C:\\Python311\\site-packages"]
    assert _sites_from_path_entry("C:\\Windows\\System32") == []
    assert _sites_from_path_entry("") == []


def test_pip_target_folder_on_sys_path_is_found_but_a_source_tree_is_not(env: WindowsEnv) -> None:
    target = "C:\\libs"
    env.add_torch("2.3.1", site_packages=target)
    env.add_file(f"{env.cwd}\\torch\\__init__.py", "# a source checkout\n")
    snap = env.snapshot()
    sys_path = (env.cwd, target, *snap.python.sys_path[1:])
    inst = find_installs(env.view(), sys_path)
    assert [(t.site_packages, t.scope) for t in inst.torch] == [(target, "env")]


def test_site_packages_torch_without_dlls_is_still_an_install(env: WindowsEnv) -> None:
    # a half-uninstalled torch (DLLs gone, __init__.py left) is what import torch finds
    env.add_file(f"{env.site_packages}\\torch\\__init__.py", "")
    (t,) = _find(env).torch
    assert t.dlls == () and t.pyd is None and t.version == "unknown"


def test_odd_torch_entries_are_ignored(env: WindowsEnv) -> None:
    env.add_file(f"{env.site_packages}\\torch", "a file, not a folder")
    assert _find(env).torch == ()
    env.host(f"{env.site_packages}\\torch").unlink()
    env.add_file(f"{env.site_packages}\\torch\\lib\\notes.txt", "")  # empty lib, no __init__
    assert _find(env).torch == ()


# -- companions --------------------------------------------------------------------------------


def test_companions_with_pin_and_extensions(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    env.add_companion("torchvision", "0.18.1+cpu", torch_pin="torch (==2.3.1)")
    env.add_companion("torchaudio", "2.3.1", torch_pin="torch ==2.3.1")
    env.add_dll(f"{env.site_packages}\\torchvision\\image.pyd")
    inst = _find(env)
    tv, ta = inst.companions
    assert (tv.name, tv.version, tv.torch_requirement) == ("torchvision", "0.18.1+cpu", "torch (==2.3.1)")
    assert [p.rsplit("\\", 1)[1] for p in tv.extensions] == ["image.pyd", "_C.pyd"]
    assert (ta.name, ta.torch_requirement) == ("torchaudio", "torch ==2.3.1")
    assert [p.rsplit("\\", 2)[1:] for p in ta.extensions] == [["lib", "libtorchaudio.pyd"]]
    primary = inst.primary()
    assert primary is not None and inst.companions_of(primary) == inst.companions


def test_optional_ffmpeg_and_sox_extensions_are_not_replayed(env: WindowsEnv) -> None:
    env.add_companion("torchaudio", "2.1.0", torch_pin="torch==2.1.0")
    lib = f"{env.site_packages}\\torchaudio\\lib"
    for name in ("_torchaudio.pyd", "libtorchaudio_ffmpeg4.pyd", "_torchaudio_ffmpeg6.pyd",
                 "libtorchaudio_sox.pyd", "_torchaudio_sox.pyd"):
        env.add_dll(f"{lib}\\{name}")
    (ta,) = _find(env).companions
    assert [p.rsplit("\\", 1)[1] for p in ta.extensions] == ["libtorchaudio.pyd", "_torchaudio.pyd"]


def test_companion_version_from_version_py_without_dist_info(env: WindowsEnv) -> None:
    env.add_companion("torchvision", "0.18.1")
    env.host(f"{env.site_packages}\\torchvision-0.18.1.dist-info\\METADATA").unlink()
    env.add_file(f"{env.site_packages}\\torchvision\\version.py",
                 "__version__ = '0.18.1+cu121'\ngit_version = 'abc'\n")
    (tv,) = _find(env).companions
    assert (tv.version, tv.torch_requirement) == ("0.18.1+cu121", None)


def test_companion_dist_info_matching_its_code(env: WindowsEnv) -> None:
    env.add_companion("torchvision", "0.18.1", torch_pin="torch==2.3.1")
    env.add_file(f"{env.site_packages}\\torchvision-0.19.0.dist-info\\METADATA",
                 "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.19.0\nRequires-Dist: torch==2.4.0\n\n")
    env.add_file(f"{env.site_packages}\\torchvision\\version.py", "__version__ = '0.18.1+cpu'\n")
    (tv,) = _find(env).companions
    assert (tv.version, tv.torch_requirement) == ("0.18.1", "torch==2.3.1")


def test_empty_companion_folder_is_not_an_install(env: WindowsEnv) -> None:
    (env.host(env.site_packages) / "torchvision").mkdir()
    assert _find(env).companions == ()


# -- RECORD and text ---------------------------------------------------------------------------


def test_read_record_rows(env: WindowsEnv) -> None:
    dist = f"{env.site_packages}\\x-1.0.dist-info"
    env.add_file(f"{dist}\\RECORD",
                 "x/lib/a.dll,sha256=abc,123\n\n\"x/odd,name.dll\",sha256=def,7\n"
                 "x-1.0.dist-info/RECORD,,\nx/y.py,,notanumber\n,sha256=zzz,1\n")
    rows = read_record(env.view(), dist)
    assert [(r.path, r.hash, r.size) for r in rows] == [
        ("x/lib/a.dll", "sha256=abc", 123), ("x/odd,name.dll", "sha256=def", 7),
        ("x-1.0.dist-info/RECORD", None, None), ("x/y.py", None, None)]
    assert read_record(env.view(), f"{env.site_packages}\\none.dist-info") == ()


def test_record_written_by_the_test_env_matches_the_files(env: WindowsEnv) -> None:
    env.add_torch("2.3.1")
    (t,) = _find(env).torch
    assert t.dist_info is not None
    rows = {r.path: r for r in read_record(env.view(), t.dist_info)}
    dll = rows["torch/lib/c10.dll"]
    assert dll.size == env.host(f"{env.site_packages}\\torch\\lib\\c10.dll").stat().st_size
    assert dll.hash is not None and dll.hash.startswith("sha256=")


def test_read_text_refuses_huge_missing_and_folder(env: WindowsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchdll import installs

    view = env.view()
    env.add_file("C:\\t\\small.txt", "h\u00e9llo")
    env.add_file("C:\\t\\bad.txt", b"\xff\xfeok")
    assert read_text(view, "C:\\t\\small.txt") == "h\u00e9llo"
    assert read_text(view, "C:\\t\\bad.txt") == "\ufffd\ufffdok"
    assert read_text(view, "C:\\t\\absent.txt") is None
    assert read_text(view, "C:\\t") is None
    monkeypatch.setattr(installs, "_MAX_TEXT", 4)
    assert read_text(view, "C:\\t\\small.txt") is None
