"""Find torch, torchvision and torchaudio installations without importing them.

Everything is read from files through a :class:`~torchdll.fsview.FileView`, so the same code
looks at the running machine or at a mirrored tree of another one:

* site-packages folders come from the snapshot's ``sys.path`` (the running environment), the
  user site (``pip install --user``), and folders of *other* environments whose DLL folders are
  on PATH (``...\\Lib\\site-packages\\torch\\lib``, conda ``...\\Library\\bin``, ``...\\Scripts``);
* a torch install is a ``torch`` folder with ``lib\\*.dll``; its version comes from
  ``torch\\version.py`` (``__version__ = '2.3.1+cpu'``, ``cuda``) and the ``torch-*.dist-info``
  folder (``METADATA``), its file list from ``RECORD``;
* torchvision and torchaudio are found the same way, with their ``Requires-Dist: torch==...``
  pin and their extension modules (``*.pyd``).
"""

from __future__ import annotations

import ntpath
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .fsview import FileView

__all__ = [
    "CompanionInstall",
    "Installs",
    "RecordEntry",
    "TorchInstall",
    "find_installs",
    "glob_order",
    "read_record",
    "read_text",
]

COMPANIONS = ("torchvision", "torchaudio")
_MAX_TEXT = 4 << 20  # METADATA/RECORD/version.py are small; refuse to slurp a huge file


def glob_order(names: Iterable[str]) -> List[str]:
    """The order ``glob.glob`` returns names on NTFS: directory B-tree order, which compares
    names upper-cased (so ``C10.dll`` sorts before ``_C.pyd``)."""
    return sorted(names, key=lambda n: (n.upper(), n))


def read_text(view: FileView, win_path: str) -> Optional[str]:
    """The text of a small file through ``view``, or ``None`` when it is absent or unreadable."""
    host = view.host_path(win_path)
    if host is None:
        return None
    try:
        with open(host, "rb") as fh:
            raw = fh.read(_MAX_TEXT + 1)
    except OSError:
        return None
    if len(raw) > _MAX_TEXT:
        return None
    return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class RecordEntry:
    """One line of a dist-info ``RECORD``: path relative to site-packages, hash, size."""

    path: str
    hash: Optional[str]
    size: Optional[int]


@dataclass(frozen=True)
class TorchInstall:
    """A torch installation found on disk.

    ``version`` is the full version (``2.3.1+cpu``); ``base_version`` without the local label;
    ``local`` the label (``cpu``, ``cu121``) or ``None``; ``cuda`` the CUDA version the build
    targets (``None`` for CPU builds). ``dlls`` lists ``torch\\lib\\*.dll`` in glob order.
    ``scope`` says how it is reachable: ``env`` (the running interpreter's sys.path), ``user``
    (the user site) or ``other`` (another environment whose folders are on PATH).
    """

    site_packages: str
    version: str
    base_version: str
    local: Optional[str]
    cuda: Optional[str]
    dlls: Tuple[str, ...]
    pyd: Optional[str]
    dist_info: Optional[str]
    scope: str

    @property
    def torch_dir(self) -> str:
        return ntpath.join(self.site_packages, "torch")

    @property
    def lib_dir(self) -> str:
        return ntpath.join(self.site_packages, "torch", "lib")

    @property
    def env_root(self) -> str:
        """The environment folder (``...\\Lib\\site-packages`` -> ``...``)."""
        parent = ntpath.dirname(self.site_packages)
        if ntpath.basename(parent).lower() == "lib":
            return ntpath.dirname(parent)
        return parent

    def dll_path(self, name: str) -> str:
        return ntpath.join(self.lib_dir, name)


@dataclass(frozen=True)
class CompanionInstall:
    """torchvision or torchaudio: version, its ``torch`` pin, and extension modules."""

    name: str
    site_packages: str
    version: str
    torch_requirement: Optional[str]
    extensions: Tuple[str, ...]
    dist_info: Optional[str]
    scope: str

    @property
    def package_dir(self) -> str:
        return ntpath.join(self.site_packages, self.name)


@dataclass(frozen=True)
class Installs:
    torch: Tuple[TorchInstall, ...] = ()
    companions: Tuple[CompanionInstall, ...] = ()

    def primary(self) -> Optional[TorchInstall]:
        """The torch ``import torch`` would pick: the first ``env`` or ``user`` install in
        ``sys.path`` order."""
        for t in self.torch:
            if t.scope in ("env", "user"):
                return t
        return None

    def companions_of(self, torch: TorchInstall) -> Tuple[CompanionInstall, ...]:
        """Companions importable next to ``torch`` (same scope family: env/user)."""
        if torch.scope == "other":
            return tuple(c for c in self.companions if c.site_packages.lower() == torch.site_packages.lower())
        return tuple(c for c in self.companions if c.scope in ("env", "user"))


_VERSION_RE = re.compile(r"""^__version__\s*(?::\s*\w+\s*)?=\s*['"]([^'"]+)['"]""", re.M)
_CUDA_RE = re.compile(r"""^cuda\s*(?::[^=]+)?=\s*(?:['"]([^'"]+)['"]|None)""", re.M)


def _dist_info(view: FileView, site: str, name: str) -> Optional[str]:
    prefix = name.lower().replace("-", "_") + "-"
    hits = [real for low, real in view.listdir(site).items()
            if low.startswith(prefix) and low.endswith(".dist-info")]
    return ntpath.join(site, sorted(hits)[0]) if hits else None


def _metadata(view: FileView, dist_info: Optional[str]) -> Tuple[Optional[str], Tuple[str, ...]]:
    if dist_info is None:
        return None, ()
    text = read_text(view, ntpath.join(dist_info, "METADATA")) or ""
    version: Optional[str] = None
    requires: List[str] = []
    for line in text.splitlines():
        if not line.strip():
            break  # headers end at the first blank line
        key, _, value = line.partition(":")
        if key == "Version" and version is None:
            version = value.strip()
        elif key == "Requires-Dist":
            requires.append(value.strip())
    return version, tuple(requires)


def read_record(view: FileView, dist_info: str) -> Tuple[RecordEntry, ...]:
    """The entries of ``<dist_info>\\RECORD`` (empty when absent)."""
    import csv
    import io

    text = read_text(view, ntpath.join(dist_info, "RECORD"))
    if not text:
        return ()
    out: List[RecordEntry] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        digest = row[1] if len(row) > 1 and row[1] else None
        size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        out.append(RecordEntry(row[0], digest, size))
    return tuple(out)


def _torch_requirement(requires: Sequence[str]) -> Optional[str]:
    for req in requires:
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
        if name.lower() == "torch":
            return req
    return None


def _split_local(version: str) -> Tuple[str, Optional[str]]:
    base, _, local = version.partition("+")
    return base, (local or None)


def _torch_at(view: FileView, site: str, scope: str) -> Optional[TorchInstall]:
    torch_dir = ntpath.join(site, "torch")
    lib = ntpath.join(torch_dir, "lib")
    entries = view.listdir(lib)
    dlls = glob_order(real for low, real in entries.items() if low.endswith(".dll"))
    listing = view.listdir(torch_dir)
    if not dlls and "__init__.py" not in listing:
        return None
    text = read_text(view, ntpath.join(torch_dir, "version.py")) or ""
    m = _VERSION_RE.search(text)
    dist = _dist_info(view, site, "torch")
    meta_version, _ = _metadata(view, dist)
    version = m.group(1) if m else (meta_version or "unknown")
    c = _CUDA_RE.search(text)
    cuda = c.group(1) if c and c.group(1) else None
    base, local = _split_local(version)
    pyds = [real for low, real in listing.items() if low.startswith("_c.") and low.endswith(".pyd")]
    pyd = ntpath.join(torch_dir, sorted(pyds)[0]) if pyds else None
    return TorchInstall(site, version, base, local, cuda, tuple(dlls), pyd, dist, scope)


def _companion_at(view: FileView, site: str, name: str, scope: str) -> Optional[CompanionInstall]:
    pkg = ntpath.join(site, name)
    listing = view.listdir(pkg)
    if not listing:
        return None
    dist = _dist_info(view, site, name)
    version, requires = _metadata(view, dist)
    if version is None:
        text = read_text(view, ntpath.join(pkg, "version.py")) or ""
        m = _VERSION_RE.search(text)
        version = m.group(1) if m else "unknown"
    exts = [ntpath.join(pkg, real) for low, real in listing.items() if low.endswith(".pyd")]
    lib = ntpath.join(pkg, "lib")  # torchaudio keeps libtorchaudio.pyd in lib\
    exts += [ntpath.join(lib, real) for low, real in view.listdir(lib).items() if low.endswith(".pyd")]
    return CompanionInstall(name, site, version, _torch_requirement(requires),
                            tuple(glob_order(exts)), dist, scope)


def _site_from_path_entry(entry: str) -> Optional[str]:
    """The site-packages folder of another environment, guessed from one of its PATH entries."""
    e = entry.strip().rstrip("\\/").replace("/", "\\")
    low = e.lower()
    if low.endswith("\\site-packages\\torch\\lib"):
        return e[: -len("\\torch\\lib")]
    if low.endswith("\\library\\bin"):
        return e[: -len("\\library\\bin")] + "\\Lib\\site-packages"
    if low.endswith("\\scripts"):
        return e[: -len("\\scripts")] + "\\Lib\\site-packages"
    return None


def find_installs(
    view: FileView,
    sys_path: Sequence[str],
    *,
    user_site: Optional[str] = None,
    path_entries: Sequence[str] = (),
) -> Installs:
    """Find every torch (and companion) installation reachable from these folders."""
    seen: Dict[str, str] = {}
    order: List[Tuple[str, str]] = []

    def add(site: Optional[str], scope: str) -> None:
        if not site:
            return
        key = site.rstrip("\\/").lower()
        if key in seen:
            return
        seen[key] = scope
        order.append((site.rstrip("\\/"), scope))

    for p in sys_path:
        if p and p.lower().rstrip("\\/").endswith(("site-packages", "dist-packages")):
            add(p, "user" if user_site and p.lower() == user_site.lower() else "env")
    add(user_site, "user")
    for entry in path_entries:
        add(_site_from_path_entry(entry), "other")

    torch: List[TorchInstall] = []
    companions: List[CompanionInstall] = []
    for site, scope in order:
        t = _torch_at(view, site, scope)
        if t is not None:
            torch.append(t)
        for name in COMPANIONS:
            comp = _companion_at(view, site, name, scope)
            if comp is not None:
                companions.append(comp)
    return Installs(tuple(torch), tuple(companions))
