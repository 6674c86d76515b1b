"""MkDocs hooks (``hooks:`` in mkdocs.yml).

* ``on_config``: drops nav entries whose page does not exist (pages other people are still
  writing, e.g. ``testing-helpers.md``, ``windows-ci.md``), so ``--strict`` does not fail on them;
* ``on_page_markdown``: a relative link that leaves ``docs/`` to a file of the repository (e.g.
  ``../examples/fastapi_server/main.py``) becomes a link to that file at ``repo_url`` (when set
  in mkdocs.yml) or plain text: MkDocs cannot publish it. A link to a file that does not exist
  is left alone, so ``--strict`` still reports it;
* ``on_pre_build``: runs ``docs/gen/generate.py`` into ``docs/reference/``, so a plain
  ``mkdocs build --strict`` always builds the reference from the current code and data.
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
import re
from pathlib import Path
from typing import Any, List

#: nav pages that may not exist yet; every other missing page stays an error
OPTIONAL_PAGES = {"testing-helpers.md", "windows-ci.md"}


def _load_generator() -> Any:
    path = Path(__file__).resolve().parent / "generate.py"
    spec = importlib.util.spec_from_file_location("torchdll_docs_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prune(items: List[Any], docs_dir: str) -> List[Any]:
    out: List[Any] = []
    for item in items:
        if isinstance(item, dict):
            kept = {}
            for title, value in item.items():
                if isinstance(value, list):
                    value = _prune(value, docs_dir)
                    if not value:
                        continue
                elif isinstance(value, str) and value in OPTIONAL_PAGES:
                    if not os.path.exists(os.path.join(docs_dir, value)):
                        continue
                kept[title] = value
            if kept:
                out.append(kept)
        elif isinstance(item, str) and item in OPTIONAL_PAGES:
            if os.path.exists(os.path.join(docs_dir, item)):
                out.append(item)
        else:
            out.append(item)
    return out


def on_config(config: Any, **kwargs: Any) -> Any:
    if config.get("nav"):
        config["nav"] = _prune(config["nav"], config["docs_dir"])
    return config


def on_pre_build(config: Any, **kwargs: Any) -> None:
    _load_generator().generate(Path(config["docs_dir"]) / "reference")


_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = docs_dir.parent
    page_dir = posixpath.dirname(page.file.src_uri)
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def fix(match: "re.Match[str]") -> str:
        target = match.group("target")
        if "://" in target or target.startswith(("#", "/", "mailto:")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        rel = posixpath.normpath(posixpath.join("docs", page_dir, path))
        if rel.startswith("docs/") or rel.startswith("../") or not (repo / rel).exists():
            return match.group(0)
        if repo_url:
            return f"[{match.group('text')}]({repo_url}/blob/main/{rel}{'#' + anchor if anchor else ''})"
        return match.group("text")

    return _LINK.sub(fix, markdown)
