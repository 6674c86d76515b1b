"""The bundled Linux demo (cause 37): what it reports, and that its message is the real ld.so's."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchdll.cli import main
from torchdll.demo_linux import DEMO_SITE, DEMO_TOOLKIT, build_linux_demo
from torchdll.linuxdiag import diagnose_linux
from torchdll.report import Severity

MESSAGE = "undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12"


def test_doctor_demo_linux_names_the_toolkit_and_the_fix() -> None:
    out = io.StringIO()
    assert main(["doctor", "--demo", "linux"], out) == 0
    text = out.getvalue()
    assert MESSAGE in text.replace("\n  ", " ").replace("\n", " ") or "__nvJitLinkComplete_12_4" in text
    assert "linux-ld-library-path-shadowing" in text and "python -m torchdll run -- python main.py" in text


def test_doctor_demo_linux_json_is_schema_valid() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test extra")
    out = io.StringIO()
    assert main(["doctor", "--demo", "linux", "--json"], out) == 0
    doc = json.loads(out.getvalue())
    schema = json.loads((Path(__file__).resolve().parents[2] / "torchdll" / "schema" / "report-v1.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["ok"] is False and doc["source"] == "offline"
    assert doc["predictions"][0]["message"].endswith(MESSAGE)
    assert doc["predictions"][0]["culprit_path"] == f"{DEMO_TOOLKIT}/libnvJitLink.so.12"
    assert doc["findings"][0]["id"] == "linux-ld-library-path-shadowing"


def test_demo_replay_and_findings(tmp_path: Path) -> None:
    lctx = build_linux_demo(tmp_path)
    replay = lctx.primary
    assert replay is not None and not replay.ok
    assert replay.error == (f"ImportError: {DEMO_SITE}/torch/lib/../../nvidia/cusparse/lib/"
                            f"libcusparse.so.12: {MESSAGE}")
    report = diagnose_linux(lctx, source="offline")
    top = report.findings[0]
    assert top.id == "linux-ld-library-path-shadowing" and top.severity is Severity.ERROR
    # without the toolkit on LD_LIBRARY_PATH the same tree loads
    from dataclasses import replace

    from torchdll.linuxload import replay_linux_torch

    clean = replace(lctx.ld, ld_library_path=())
    assert replay_linux_torch(clean, lctx.torches[0], lctx.sys_path, lctx.view).ok


CHILD = r"""
import ctypes, os, sys
root, site = sys.argv[1], sys.argv[2]
try:
    ctypes.CDLL(root + site + "/torch/lib/libtorch_global_deps.so", mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    ctypes.CDLL(root + site + "/torch/_C.cpython-311-x86_64-linux-gnu.so", mode=os.RTLD_NOW)
except OSError as exc:
    print("ERROR " + str(exc))
else:
    print("OK")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
                    reason="the real glibc loader (x86-64) checks the demo's files")
def test_the_demo_message_is_the_real_loaders(tmp_path: Path) -> None:
    """The demo's torch part is $ORIGIN-relative: the real ld.so loads it under the temporary
    folder and must fail with the message the demo reports (paths shifted by the folder)."""
    lctx = build_linux_demo(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    root = str(tmp_path)
    for llp, expected in ((root + DEMO_TOOLKIT, False), (None, True)):
        if llp:
            env["LD_LIBRARY_PATH"] = llp
        else:
            env.pop("LD_LIBRARY_PATH", None)
        proc = subprocess.run([sys.executable, "-c", CHILD, root, DEMO_SITE], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.strip()
        if expected:
            assert line == "OK"
        else:
            assert lctx.primary is not None and lctx.primary.error is not None
            model = lctx.primary.error.split(": ", 1)[1]  # without "ImportError: "
            assert line == "ERROR " + root + model
