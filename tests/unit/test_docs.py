"""The documentation: generated reference pages cover the data tables, and the site builds.

The MkDocs build runs only where mkdocs is installed (``pip install -e '.[docs]'``; CI installs it).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torchdll
from torchdll._data import findings_catalogue

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("torchdll_docs_generate", DOCS / "gen" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    files = _generator().generate(out)
    assert sorted(f.name for f in files) == sorted(["findings.md", "errors.md", "cli.md", "schemas.md"])
    return {f.name: f.read_text("utf-8") for f in files}


def _codes() -> dict:
    return json.loads((REPO / "torchdll" / "data" / "error_codes.json").read_text("utf-8"))["codes"]


def test_findings_page_lists_every_catalogue_id(pages: dict) -> None:
    text = pages["findings.md"]
    catalogue = findings_catalogue()
    assert catalogue
    for fid, body in catalogue.items():
        assert f"### `{fid}` {{#{fid}}}" in text, fid
        assert f"{{#family-{body['family']}}}" in text


# cause ids of error_codes.json that no check reports yet (rendered unlinked); remove an id
# here once it is in torchdll/data/findings/
UNCATALOGUED_CAUSES: set[str] = set()  # every cause named in error_codes.json is a catalogued finding


def test_errors_page_lists_every_code_and_links_its_causes(pages: dict) -> None:
    text = pages["errors.md"]
    catalogue = findings_catalogue()
    unknown = set()
    for code, body in _codes().items():
        assert f"{{#winerror-{code}}}" in text, code
        for fid in body.get("causes", []):
            if fid in catalogue:
                assert f"(findings.md#{fid})" in text
            else:
                unknown.add(fid)
                assert f"`{fid}` (not in the catalogue)" in text
    assert unknown <= UNCATALOGUED_CAUSES, f"error_codes.json names unknown findings {unknown - UNCATALOGUED_CAUSES}"


def test_cli_page_has_every_command_help(pages: dict) -> None:
    import argparse

    from torchdll.cli import _parser

    text = pages["cli.md"]
    parser = _parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"doctor", "explain", "fix-path"} <= set(subs)
    for name in subs:
        assert f"## torchdll {name} {{#{name}}}" in text
        assert f"usage: torchdll {name}" in text


def test_schemas_page_embeds_both_schemas(pages: dict) -> None:
    text = pages["schemas.md"]
    for name in ("report-v1", "snapshot-v1"):
        schema = json.loads((REPO / "torchdll" / "schema" / f"{name}.json").read_text("utf-8"))
        assert f"{{#{name}}}" in text
        assert json.dumps(schema, indent=2, ensure_ascii=False) in text


def test_api_page_documents_every_public_name() -> None:
    text = (DOCS / "reference" / "api.md").read_text("utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)$", text, re.M))
    renamed = {v: k for k, v in torchdll._RENAMED.items()}  # type: ignore[attr-defined]
    names = set()
    for target in documented:
        module, _, attr = target.rpartition(".")
        names.add(renamed.get(attr, attr))
        assert torchdll._LAZY.get(renamed.get(attr, attr)) == module, target  # type: ignore[attr-defined]
    assert names == set(torchdll.__all__) - {"__version__"}


@pytest.mark.parametrize("page", ["1114", "126", "127", "193", "1455", "4551", "omp15"])
def test_howto_pages_start_with_the_message(page: str) -> None:
    lines = (DOCS / "howto" / f"{page}.md").read_text("utf-8").splitlines()
    block = lines[lines.index("```text") + 1]
    if page == "omp15":
        assert block.startswith("OMP: Error #15: Initializing libiomp5md.dll, but found libiomp5md.dll already initialized.")
    else:
        message = _codes()[page]["message"]
        assert block.startswith(f"OSError: [WinError {page}] {message} Error loading \"")
        assert block.endswith("\" or one of its dependencies.")


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings-python is not installed")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index.html", "tutorial.html", "explanation.html", "howto/1114.html",
                 "reference/findings.html", "reference/errors.html", "reference/cli.html",
                 "reference/schemas.html", "reference/api.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api.html").read_text("utf-8")
    assert 'id="torchdll.guard.safe_import_torch"' in api
