"""Real Windows wheels as test data: downloaded once by exact version, extracted on demand.

Wheels are large (torch 2.3.1: 160 MB, mkl 2021.4.0: 229 MB), so they live in a cache outside
the repository (``$TORCHDLL_TEST_CACHE`` or the platformdirs user cache ``torchdll-tests``), are
downloaded once with ``pip download`` (ignoring the machine's pip constraints, which cap torch),
and only the members a test needs are extracted. Trees for tests are built from hard links.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterable

import platformdirs


class WheelUnavailable(RuntimeError):
    """The wheel could not be downloaded (no network, no such version)."""


def cache_dir() -> Path:
    env = os.environ.get("TORCHDLL_TEST_CACHE")
    base = Path(env) if env else Path(platformdirs.user_cache_dir("torchdll-tests"))
    base.mkdir(parents=True, exist_ok=True)
    return base


def wheel(name: str, version: str, *, platform: str = "win_amd64", python: str = "3.11") -> Path:
    """Path of ``name==version`` for ``platform``, downloading it into the cache if needed."""
    dest = cache_dir() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    norm = name.replace("-", "_").lower()

    def find() -> Path | None:
        for p in sorted(dest.glob("*.whl")):
            stem = p.name.lower()
            if stem.startswith(f"{norm}-{version}-") and (platform in stem or "none-any" in stem):
                return p
        return None

    hit = find()
    if hit is not None:
        return hit
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    env.pop("PIP_CONSTRAINT", None)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--platform", platform, "--python-version", python,
        f"{name}=={version}", "-d", str(dest),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    hit = find()
    if proc.returncode != 0 or hit is None:
        raise WheelUnavailable(f"pip download {name}=={version} failed: {proc.stderr.strip()[-500:]}")
    return hit


def extract(whl: Path, patterns: Iterable[str]) -> Path:
    """Extract the members matching any glob pattern into the cache; return the extract root."""
    root = cache_dir() / "extracted" / whl.stem
    pats = list(patterns)
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            if info.is_dir() or not any(fnmatch.fnmatch(info.filename, p) for p in pats):
                continue
            target = root / info.filename
            if target.exists() and target.stat().st_size == info.file_size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".part{os.getpid()}")
            with zf.open(info) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, target)
    return root


def link_file(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (copy if linking is impossible)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_dir(src: Path, dst: Path, pattern: str = "*") -> list[Path]:
    """Hard-link every file of ``src`` matching ``pattern`` into ``dst``; return the new paths."""
    out = []
    for p in sorted(src.iterdir()):
        if p.is_file() and fnmatch.fnmatch(p.name.lower(), pattern.lower()):
            link_file(p, dst / p.name)
            out.append(dst / p.name)
    return out
