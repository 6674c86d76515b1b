"""The loader environment of a new process: plan_loader_env, ``torchdll run``, the guard's
LD_LIBRARY_PATH precheck, and the "changed in-process" check. Folder listings only (no ELF
parsing) except where said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List

import pytest

from torchdll.checks.linux import check_environ_changed, shadowing_entries
from torchdll.errors import PrecheckWarning
from torchdll.guard import GuardSystem, safe_import_torch
from torchdll.ldso import split_search_path
from torchdll.loaderenv import plan_loader_env
from torchdll.report import Report


def _site(tmp_path: Path, libs: List[str], nvidia: Dict[str, List[str]] = {}) -> Path:  # noqa: B006
    site = tmp_path / "site-packages"
    lib = site / "torch" / "lib"
    lib.mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("# synthetic\n")
    (site / "torch" / "version.py").write_text("__version__ = '2.13.0+cu126'\ncuda = '12.6'\n")
    for n in libs:
        (lib / n).write_bytes(b"")
    for pkg, names in nvidia.items():
        d = site / "nvidia" / pkg / "lib"
        d.mkdir(parents=True)
        for n in names:
            (d / n).write_bytes(b"")
    return site


def _dir(tmp_path: Path, name: str, files: List[str]) -> Path:
    d = tmp_path / name
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"")
    return d


def test_split_search_path_like_ld_so() -> None:
    assert split_search_path(None) == () and split_search_path("") == ()
    assert split_search_path("/a:/b;/c") == ("/a", "/b", "/c")
    assert split_search_path("/a::/b:") == ("/a", "", "/b", "")  # empty = current directory
    assert split_search_path("/a:/b", ":") == ("/a", "/b")


def test_plan_removes_only_shadowing_entries_and_says_why(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so", "libtorch_cpu.so"],
                 {"nvjitlink": ["libnvJitLink.so.12"], "cusparse": ["libcusparse.so.12"]})
    toolkit = _dir(tmp_path, "cuda-12.1/lib64", ["libnvJitLink.so.12", "libcudart.so.12"])
    other = _dir(tmp_path, "opt/lib", ["libfoo.so.1"])
    korean = _dir(tmp_path, "홍길동/lib", ["libc10.so"])
    value = f"{other}:{toolkit}:{korean}:"
    env = {"LD_LIBRARY_PATH": value, "HOME": "/root"}
    plan = plan_loader_env(env, sys_path=[str(site)], platform="linux", cwd=str(tmp_path))
    assert env["LD_LIBRARY_PATH"] == value  # the input is never modified
    assert [r.entry for r in plan.removed] == [str(toolkit), str(korean)]
    assert "libnvJitLink.so.12" in plan.removed[0].reason and "shadow" in plan.removed[0].reason
    assert plan.environ["LD_LIBRARY_PATH"] == f"{other}:"  # order and the empty entry kept
    assert plan.environ["HOME"] == "/root" and plan.changed
    assert plan.torch_dir == str(site / "torch")


def test_plan_unsets_the_variable_when_nothing_is_left(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so"])
    bad = _dir(tmp_path, "other-torch/lib", ["libc10.so"])
    plan = plan_loader_env({"LD_LIBRARY_PATH": str(bad)}, sys_path=[str(site)], platform="linux")
    assert "LD_LIBRARY_PATH" not in plan.environ and plan.changed


def test_plan_keeps_torchs_own_folder_and_unrelated_values(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so"], {"cublas": ["libcublas.so.12"]})
    value = f"{site / 'torch' / 'lib'}:{site / 'nvidia' / 'cublas' / 'lib'}:relative/dir:%VAR%:'/quoted'"
    plan = plan_loader_env({"LD_LIBRARY_PATH": value}, sys_path=[str(site)], platform="linux",
                           cwd=str(tmp_path))
    assert plan.removed == () and not plan.changed and plan.environ["LD_LIBRARY_PATH"] == value


def test_plan_without_torch_changes_nothing(tmp_path: Path) -> None:
    d = _dir(tmp_path, "lib", ["libc10.so"])
    plan = plan_loader_env({"LD_LIBRARY_PATH": str(d)}, sys_path=[str(tmp_path / "nowhere")], platform="linux")
    assert not plan.changed and plan.environ["LD_LIBRARY_PATH"] == str(d)
    assert "no torch" in plan.notes[0]


def test_plan_on_macos_cleans_dyld_variables(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.dylib", "libomp.dylib"])
    brew = _dir(tmp_path, "brew/lib", ["libomp.dylib"])
    env = {"DYLD_LIBRARY_PATH": f"{brew}:/usr/local/lib", "LD_LIBRARY_PATH": str(brew)}
    plan = plan_loader_env(env, sys_path=[str(site)], platform="darwin")
    assert [(r.variable, r.entry) for r in plan.removed] == [("DYLD_LIBRARY_PATH", str(brew))]
    assert plan.environ["DYLD_LIBRARY_PATH"] == "/usr/local/lib"
    assert plan.environ["LD_LIBRARY_PATH"] == str(brew)  # not a macOS loader variable


def test_shadowing_entries_reads_listings_only(tmp_path: Path) -> None:
    d = _dir(tmp_path, "x", ["libc10.so", "README"])
    assert shadowing_entries((str(d), str(tmp_path / "missing")), {"libc10.so": "/site/torch/lib/libc10.so"}) == \
        [(str(d), ("libc10.so",))]


def _cli(args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PYTHON"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "torchdll", "run", *args], capture_output=True, text=True,
                          env=full, timeout=120)


def test_run_starts_the_command_with_the_cleaned_environment(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so"])
    bad = _dir(tmp_path, "other/lib", ["libc10.so"])
    good = _dir(tmp_path, "good/lib", ["libfoo.so"])
    proc = _cli(["--", sys.executable, "-c", "import os,sys; print(os.environ.get('LD_LIBRARY_PATH')); sys.exit(7)"],
                {"LD_LIBRARY_PATH": f"{bad}:{good}", "PYTHONPATH": str(site)})
    assert proc.returncode == 7  # the command's own status (exec: it *is* the process)
    assert proc.stdout.strip() == str(good)
    assert f"removed '{bad}' from LD_LIBRARY_PATH" in proc.stderr and "libc10.so" in proc.stderr


def test_run_dry_run_json(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so"])
    bad = _dir(tmp_path, "other/lib", ["libc10.so"])
    proc = _cli(["--dry-run", "--json", "--", sys.executable, "main.py"],
                {"LD_LIBRARY_PATH": str(bad), "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["removed"] == [{"variable": "LD_LIBRARY_PATH", "entry": str(bad), "reason": doc["removed"][0]["reason"]}]
    assert doc["environment"]["LD_LIBRARY_PATH"] is None and doc["torch_dir"] == str(site / "torch")


def test_run_errors(tmp_path: Path) -> None:
    assert _cli([], {}).returncode == 2
    proc = _cli(["--", "no-such-command-torchdll"], {})
    assert proc.returncode == 127 and "command not found" in proc.stderr


# --------------------------------------------------------------------------------------------
# the guard on Linux
# --------------------------------------------------------------------------------------------


def _system(tmp_path: Path, start: Dict[str, str], listing: Dict[str, List[str]]) -> GuardSystem:
    torch_dir = str(tmp_path / "site" / "torch")

    class Spec:
        origin = torch_dir + "/__init__.py"
        submodule_search_locations = [torch_dir]

    return GuardSystem(platform="linux", environ=dict(start), find_spec=lambda name: Spec(),
                       import_module=lambda name: __import__("types").ModuleType(name),
                       listdir=lambda d: listing.get(d.rstrip("/"), []), start_environ=lambda: start,
                       read_text=lambda p: None, linux_report=lambda: Report())


def test_guard_warns_about_a_shadowing_entry_and_names_torchdll_run(tmp_path: Path) -> None:
    torch_lib = str(tmp_path / "site" / "torch" / "lib")
    nvidia = str(tmp_path / "site" / "nvidia")
    listing = {torch_lib: ["libc10.so", "libtorch_cpu.so"], nvidia: ["nvjitlink"],
               nvidia + "/nvjitlink/lib": ["libnvJitLink.so.12"],
               "/usr/local/cuda-12.1/lib64": ["libnvJitLink.so.12", "libcudart.so.12"], "/opt/x": ["liby.so"]}
    system = _system(tmp_path, {"LD_LIBRARY_PATH": "/usr/local/cuda-12.1/lib64:/opt/x"}, listing)
    guard = safe_import_torch(system=system)
    with pytest.warns(PrecheckWarning, match="torchdll run"):
        with guard:
            pass
    (finding,) = guard.findings
    assert finding.id == "linux-ld-library-path-shadowing"
    assert "/usr/local/cuda-12.1/lib64" in finding.title and "/opt/x" not in finding.title


def test_guard_reads_the_start_value_not_os_environ(tmp_path: Path) -> None:
    torch_lib = str(tmp_path / "site" / "torch" / "lib")
    listing = {torch_lib: ["libc10.so"], "/bad": ["libc10.so"]}
    # the process started without it; setting it now changes nothing for ld.so: no warning
    system = _system(tmp_path, {}, listing)
    system.environ["LD_LIBRARY_PATH"] = "/bad"
    guard = safe_import_torch(system=system)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with guard:
            pass
    assert guard.findings == ()


def test_environ_changed_check() -> None:
    class Ctx:
        environ = {"LD_LIBRARY_PATH": "/a"}
        current_environ = {"LD_LIBRARY_PATH": "/b"}

    (f,) = check_environ_changed(Ctx())
    assert f.id == "linux-ld-library-path-changed" and f.evidence[0].value == "/a"
    Ctx.current_environ = {"LD_LIBRARY_PATH": "/a"}
    assert list(check_environ_changed(Ctx())) == []


def test_dyld_check_on_macos(tmp_path: Path) -> None:
    from torchdll.checks.linux import check_dyld
    from torchdll.linuxload import find_linux_torch

    site = _site(tmp_path, ["libc10.dylib", "libomp.dylib"])
    brew = _dir(tmp_path, "brew/lib", ["libomp.dylib"])

    class Ctx:
        platform = "darwin"
        environ = {"DYLD_LIBRARY_PATH": str(brew)}
        torches = tuple(find_linux_torch([str(site)]))

    findings = list(check_dyld(Ctx()))
    assert [f.id for f in findings] == ["macos-dyld-variables"]
    assert "libomp.dylib" in findings[0].title and str(brew) in findings[0].title
    Ctx.platform = "linux"
    assert list(check_dyld(Ctx())) == []


def test_plan_on_windows_cleans_path_with_the_sanitize_policy() -> None:
    env = {"PATH": "C:\\venv\\Scripts;;C:\\Windows;relative"}
    plan = plan_loader_env(env, platform="win32")
    assert [r.entry for r in plan.removed] == ["", "relative"]
    assert plan.environ["PATH"] == "C:\\venv\\Scripts;C:\\Windows" and env["PATH"].count(";") == 3


def test_guard_on_macos_warns_about_dyld_library_path(tmp_path: Path) -> None:
    torch_lib = str(tmp_path / "site" / "torch" / "lib")
    listing = {torch_lib: ["libc10.dylib", "libomp.dylib"], "/opt/homebrew/lib": ["libomp.dylib", "libpng.dylib"]}
    system = _system(tmp_path, {}, listing)
    system.platform = "darwin"
    system.environ["DYLD_LIBRARY_PATH"] = "/opt/homebrew/lib"  # macOS: no /proc; os.environ is read
    guard = safe_import_torch(system=system)
    with pytest.warns(PrecheckWarning, match="DYLD_LIBRARY_PATH"):
        with guard:
            pass
    (finding,) = guard.findings
    assert finding.id == "macos-dyld-variables" and "libomp.dylib" in finding.title


def test_plan_drops_ld_preload_copies_of_torch_libraries(tmp_path: Path) -> None:
    site = _site(tmp_path, ["libc10.so"])
    other = _dir(tmp_path, "other", ["libc10.so"])
    env = {"LD_PRELOAD": f"{other}/libc10.so /usr/lib/libjemalloc.so.2"}
    plan = plan_loader_env(env, sys_path=[str(site)], platform="linux")
    assert [(r.variable, r.entry) for r in plan.removed] == [("LD_PRELOAD", f"{other}/libc10.so")]
    assert plan.environ["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the live ld.so context exists on Linux")
def test_diagnose_never_raises_on_a_machine_it_cannot_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchdll.ldcache as ldcache
    import torchdll.linuxdiag as linuxdiag
    from torchdll.ldso import live_context

    def unknown(*_a: object, **_k: object) -> object:
        raise ValueError("no table for this machine")

    monkeypatch.setattr(ldcache, "system_search", unknown)
    assert live_context(loaded=[]).system_dirs == ("/lib", "/usr/lib")  # the generic layout

    def broken(**_k: object) -> object:
        raise RuntimeError("unreadable /proc")

    monkeypatch.setattr(linuxdiag, "linux_context", broken)
    report = linuxdiag.diagnose_linux()
    assert report.predictions == () and "could not model" in report.notes[0] and "unreadable /proc" in report.notes[0]


def test_run_finds_the_interpreter_of_a_console_script(tmp_path: Path) -> None:
    """`torchdll run -- uvicorn main:app`: the torch to protect is the one of the interpreter
    the script's #! line names (here: this one, with a synthetic site on PYTHONPATH)."""
    from torchdll.loaderenv import torch_sys_path

    site = _site(tmp_path, ["libc10.so"])
    script = tmp_path / "bin" / "uvicorn"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('served', sys.argv[1:])\n")
    script.chmod(0o755)
    env_script = tmp_path / "bin" / "tool"
    env_script.write_text("#!/usr/bin/env python3\n")
    (tmp_path / "bin" / "notpython").write_text("#!/bin/sh\necho hi\n")
    assert torch_sys_path(str(tmp_path / "bin" / "notpython")) is None
    assert torch_sys_path(str(env_script)) is not None
    bad = _dir(tmp_path, "other/lib", ["libc10.so"])
    proc = _cli(["--", str(script), "main:app"], {"LD_LIBRARY_PATH": str(bad), "PYTHONPATH": str(site)})
    assert proc.returncode == 0 and "served ['main:app']" in proc.stdout
    assert f"removed '{bad}' from LD_LIBRARY_PATH" in proc.stderr and "not a Python interpreter" not in proc.stderr


OLD_INIT = '''
def _preload_cuda_deps(lib_folder, lib_name):
    """torch 2.0/2.1 shape: one folder and pattern per call."""


def _load_global_deps():
    try:
        ctypes.CDLL(lib_path, mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        cuda_libs = {
            'cublas': 'libcublas.so.*[0-9]',
            'cudnn': 'libcudnn.so.*[0-9]',
            'cuda_nvrtc': 'libnvrtc.so.*[0-9].*[0-9]',
        }
        for lib_folder, lib_name in cuda_libs.items():
            _preload_cuda_deps(lib_folder, lib_name)
'''

NEW_INIT = '''
def _preload_cuda_deps(err=None):
    cuda_libs = [
        ("cublas", "libcublasLt.so.*[0-9]"),
        ("cublas", "libcublas.so.*[0-9]"),
    ]


def _load_global_deps():
    with open("/proc/self/maps") as f:
        pass
'''


@pytest.mark.parametrize("text, preloads, after", [
    (OLD_INIT, (("cublas", "libcublas.so.*[0-9]"), ("cudnn", "libcudnn.so.*[0-9]"),
                ("cuda_nvrtc", "libnvrtc.so.*[0-9].*[0-9]")), False),
    (NEW_INIT, (("cublas", "libcublasLt.so.*[0-9]"), ("cublas", "libcublas.so.*[0-9]")), True),
])
def test_the_cuda_preload_list_is_read_from_torchs_own_init(tmp_path: Path, text: str, preloads: tuple,
                                                            after: bool) -> None:
    from torchdll.linuxload import find_linux_torch

    site = _site(tmp_path, ["libc10.so"])
    (site / "torch" / "__init__.py").write_text(text)
    (torch,) = find_linux_torch([str(site)])
    assert torch.cuda_preloads == preloads and torch.preload_after_success is after
