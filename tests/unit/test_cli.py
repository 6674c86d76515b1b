from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdll._pebuild import build_pe
from torchdll.cli import main


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_demo_names_the_culprit_and_the_rule() -> None:
    code, text = run("demo")
    assert code == 0
    assert "FAILS with [WinError 127]" in text
    assert "Error loading" in text and "shm.dll" in text
    assert "envs\\old\\Lib\\site-packages\\torch\\lib\\c10.dll [loaded-module]" in text
    assert "?c10_mutex@c10@@YAXXZ" in text


def test_demo_json_is_machine_readable(tmp_path: Path) -> None:
    code, text = run("demo", "--json", "--keep", str(tmp_path / "tree"))
    assert code == 0
    data = json.loads(text)
    assert all(r["error"] is None for r in data["torch_first"]["results"])
    failed = [r for r in data["plugin_first"]["results"] if r["error"] is not None]
    assert failed[0]["error"] == 127
    assert failed[0]["culprit"]["resolution"]["rule"] == "loaded-module"
    assert (tmp_path / "tree" / "C" / "Windows" / "System32" / "kernel32.dll").is_file()


def test_python_dash_m_runs_doctor_by_default() -> None:
    proc = subprocess.run([sys.executable, "-m", "torchdll"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    if sys.platform.startswith("linux"):  # the ld.so model answers for the live machine
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            assert "loads (predicted)" in proc.stdout or "import will FAIL" in proc.stdout
        else:
            assert "no torch installation found" in proc.stdout


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    lib = root / "C" / "app" / "lib"
    lib.mkdir(parents=True)
    (lib / "a.dll").write_bytes(build_pe(name="a.dll", imports={"b.dll": ["f", "g"]}))
    (lib / "b.dll").write_bytes(build_pe(name="b.dll", exports=["f"]))
    return root


def test_resolve_and_closure_on_a_mirror(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    code, text = run("resolve", "b", "--root", str(root), "--path", "C:\\app\\lib")
    assert code == 0 and "C:\\app\\lib\\b.dll" in text and "[path]" in text
    code, text = run("closure", "C:\\app\\lib\\a.dll", "--root", str(root), "--json")
    assert code == 1
    data = json.loads(text)
    culprit = data["results"][0]["culprit"]
    assert data["results"][0]["error"] == 127
    assert [m["symbol"] for m in culprit["missing"]] == ["g"]


def test_resolve_not_found_exit_1(tmp_path: Path) -> None:
    code, text = run("resolve", "ghost.dll", "--root", str(_tree(tmp_path)))
    assert code == 1 and "WinError 126" in text


def test_pe_command_and_bad_input(tmp_path: Path) -> None:
    good = tmp_path / "x.dll"
    good.write_bytes(build_pe(name="x.dll", exports=["f"], dependent_load_flags=0x800))
    code, text = run("pe", str(good))
    assert code == 0 and "DependentLoadFlags 0x800" in text and "x64" in text
    code, text = run("pe", str(good), "--json")
    assert json.loads(text)["machine"] == "x64"
    bad = tmp_path / "bad.dll"
    bad.write_text("<html>not a dll</html>")
    assert run("pe", str(bad))[0] == 2


def test_fix_path_is_wired_into_the_main_cli() -> None:
    value = "%SystemRoot%\\system32;C:\\proj\\.venv\\Lib\\site-packages\\torch\\lib;;relative"
    code, text = run("fix-path", "--value", value, "--type", "REG_EXPAND_SZ", "--json")
    assert code == 0
    data = json.loads(text)
    assert data["action"] == "plan"
    assert data["plan"]["old"]["value"] == value
    # empty and relative entries go; %SystemRoot% stays unexpanded, type kept
    assert data["plan"]["new"] == {"value": value.split(";;")[0], "type": "REG_EXPAND_SZ"}


def test_doctor_demo_text_and_json() -> None:
    code, text = run("doctor", "--demo")
    assert code == 0
    assert "import will FAIL with WinError 1114" in text and "miniconda3\\msvcp140.dll" in text
    code, text = run("doctor", "--demo", "--json")
    data = json.loads(text)
    assert data["predictions"][0]["winerror"] == 1114 and data["ok"] is False
    code, text = run("doctor", "--demo", "--markdown")
    assert text.startswith("## torchdll report") and "| torch |" in text


def test_doctor_offline_from_a_saved_snapshot(tmp_path: Path) -> None:
    from torchdll.demo import build_seed_demo

    snap, view = build_seed_demo(tmp_path / "mirror")
    snap.save(tmp_path / "snap.json")
    code, text = run("doctor", "--snapshot", str(tmp_path / "snap.json"), "--root", str(tmp_path / "mirror"), "--json")
    assert code == 1
    assert json.loads(text)["predictions"][0]["winerror"] == 1114


def test_explain_codes() -> None:
    code, text = run("explain", "1114")
    assert code == 0 and "ERROR_DLL_INIT_FAILED" in text and "msvcp140" in text
    code, text = run("explain", "0x800711C7", "--json")
    assert json.loads(text)["code"] == 4551
    assert run("explain", "WinError 126")[0] == 0
    assert run("explain", "99999")[0] == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ld.so model answers for Linux")
def test_elf_and_ldd_commands_on_a_system_library(tmp_path: Path) -> None:
    lib = "/lib/x86_64-linux-gnu/libstdc++.so.6"
    if not os.path.exists(lib):
        pytest.skip(f"{lib} not present (not a Debian x86-64 layout)")
    out = io.StringIO()
    assert main(["elf", lib, "--json"], out) == 0
    doc = json.loads(out.getvalue())
    assert doc["soname"] == "libstdc++.so.6" and "libc.so.6" in doc["needed"]
    out = io.StringIO()
    assert main(["ldd", lib, "--json"], out) == 0
    res = json.loads(out.getvalue())
    assert res["ok"] and any(e["name"] == "libc.so.6" for e in res["edges"])
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"\x7fELF\x01")
    out = io.StringIO()
    assert main(["ldd", str(bad)], out) == 1 and "FAILS:" in out.getvalue()
