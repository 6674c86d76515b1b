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
    "dist_metadata",
    "find_installs",
    "glob_order",
    "read_record",
    "read_text",
]

COMPANIONS = ("torchvision", "torchaudio")
_MAX_TEXT = 4 << 20  # METADATA/RECORD/version.py are small; refuse to slurp a huge file


def _ntfs_key(name: str) -> Tuple[int, ...]:
    """NTFS collation key: the UTF-16 code units of the name, each mapped through the upcase
    table one unit at a time (a character whose upper case is several characters, like
    ``ß``, stays as it is; surrogates compare as raw units, so astral characters sort below
    U+E000..U+FFFF as on NTFS)."""
    units: List[int] = []
    for ch in name:
        up = ch.upper()
        if len(up) == 1:
            ch = up
        raw = ch.encode("utf-16-le", errors="surrogatepass")
        units.extend(int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2))
    return tuple(units)


def glob_order(names: Iterable[str]) -> List[str]:
    """The order ``glob.glob`` returns names on NTFS: directory B-tree order, which compares
    names upper-cased code unit by code unit (so ``C10.dll`` sorts before ``_C.pyd``)."""
    return sorted(names, key=lambda n: (_ntfs_key(n), n))


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
    return raw.decode("utf-8-sig", errors="replace")  # a BOM would hide the first line


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


_VERSION_RE = re.compile(r"""^__version__\s*(?::\s*[\w.\[\]]+\s*)?=\s*['"]([^'"]+)['"]""", re.MULTILINE)
_CUDA_RE = re.compile(r"""^cuda\s*(?::[^=]+)?=\s*(?:['"]([^'"]+)['"]|None)""", re.MULTILINE)


def _dist_infos(view: FileView, site: str, name: str) -> List[str]:
    """Every ``<name>-<version>.dist-info`` folder in ``site`` (more than one after an
    interrupted upgrade), as file names."""
    prefix = name.lower().replace("-", "_") + "-"
    return [real for low, real in view.listdir(site).items()
            if low.startswith(prefix) and low.endswith(".dist-info")]


def _dist_version_key(folder: str) -> Tuple[int, object]:
    from packaging.version import InvalidVersion, Version

    raw = folder[: -len(".dist-info")].partition("-")[2]
    try:
        return (1, Version(raw))
    except InvalidVersion:
        return (0, raw)


def _dist_info(view: FileView, site: str, name: str, version: Optional[str] = None) -> Optional[str]:
    """The dist-info of ``name`` in ``site``: when several exist, the one whose folder names
    ``version`` (the version the code itself reports), else the newest."""
    hits = _dist_infos(view, site, name)
    if not hits:
        return None
    if len(hits) > 1 and version:
        want = version.lower()
        same = [h for h in hits if h.lower()[: -len(".dist-info")].partition("-")[2] == want]
        base = want.partition("+")[0]
        same = same or [h for h in hits
                        if h.lower()[: -len(".dist-info")].partition("-")[2].partition("+")[0] == base]
        if same:
            hits = same
    best = max(hits, key=lambda h: (_dist_version_key(h), h.lower()))
    return ntpath.join(site, best)


def _metadata(view: FileView, dist_info: Optional[str]) -> Tuple[Optional[str], Tuple[str, ...]]:
    if dist_info is None:
        return None, ()
    text = read_text(view, ntpath.join(dist_info, "METADATA")) or ""
    version: Optional[str] = None
    requires: List[str] = []
    for line in text.splitlines():
        if not line.strip():
            break  # headers end at the first blank line
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation line
        key, _, value = line.partition(":")
        key = key.strip().lower()  # header names are case-insensitive
        if key == "version" and version is None:
            version = value.strip() or None
        elif key == "requires-dist":
            requires.append(value.strip())
    return version, tuple(requires)


def dist_metadata(view: FileView, dist_info: Optional[str]) -> Tuple[Optional[str], Tuple[str, ...]]:
    """``(Version, Requires-Dist values)`` of ``<dist_info>\\METADATA`` (what pip sees; torch's
    own ``version.py`` may say ``2.3.1+cpu`` where the PyPI wheel's METADATA says ``2.3.1``)."""
    return _metadata(view, dist_info)


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
    """The ``Requires-Dist`` on torch that always applies (not one behind an ``extra``)."""
    for req in requires:
        name = re.split(r"[\s<>=!~;\[(@]", req.strip(), maxsplit=1)[0]
        if name.lower() != "torch":
            continue
        if re.search(r"\bextra\s*==", req.partition(";")[2]):
            continue
        return req
    return None


def _split_local(version: str) -> Tuple[str, Optional[str]]:
    base, _, local = version.partition("+")
    return base, (local or None)


def _pick_extension(names: Sequence[str], python_version: Optional[str]) -> Optional[str]:
    """The ``_C`` extension file CPython's import picks: with a known interpreter version, the
    first of ``_C.cpXY-<platform>.pyd`` then the untagged ``_C.pyd`` (``EXTENSION_SUFFIXES``
    order); otherwise (or when none matches) the first in glob order, so a wrong-tag file is
    still seen by the checks."""
    if not names:
        return None
    ordered = glob_order(names)
    if python_version:
        parts = python_version.split(".")
        if len(parts) >= 2 and parts[0].isdigit():
            minor = re.match(r"\d+", parts[1])
            if minor:
                tag = f".cp{parts[0]}{minor.group(0)}-"
                for n in ordered:
                    if tag in n.lower():
                        return n
        for n in ordered:
            if n.lower() == "_c.pyd":
                return n
    return ordered[0]


def _torch_at(view: FileView, site: str, scope: str, *, require_dlls: bool = False,
              python_version: Optional[str] = None) -> Optional[TorchInstall]:
    torch_dir = ntpath.join(site, "torch")
    lib = ntpath.join(torch_dir, "lib")
    entries = view.listdir(lib)
    dlls = glob_order(real for low, real in entries.items() if low.endswith(".dll"))
    listing = view.listdir(torch_dir)
    if not dlls and (require_dlls or "__init__.py" not in listing):
        return None
    text = read_text(view, ntpath.join(torch_dir, "version.py")) or ""
    m = _VERSION_RE.search(text)
    dist = _dist_info(view, site, "torch", m.group(1) if m else None)
    meta_version, _ = _metadata(view, dist)
    version = m.group(1) if m else (meta_version or "unknown")
    c = _CUDA_RE.search(text)
    cuda = c.group(1) if c and c.group(1) else None
    base, local = _split_local(version)
    pyds = [real for low, real in listing.items() if low.startswith("_c.") and low.endswith(".pyd")]
    chosen = _pick_extension(pyds, python_version)
    pyd = ntpath.join(torch_dir, chosen) if chosen else None
    return TorchInstall(site, version, base, local, cuda, tuple(dlls), pyd, dist, scope)


#: Extension modules a companion loads only on demand (FFmpeg/SoX integrations need DLLs the
#: user installs separately); replaying them as part of ``import torchaudio`` would predict
#: failures that never happen.
_OPTIONAL_EXTENSION = re.compile(r"ffmpeg|sox", re.IGNORECASE)


def _companion_at(view: FileView, site: str, name: str, scope: str) -> Optional[CompanionInstall]:
    pkg = ntpath.join(site, name)
    listing = view.listdir(pkg)
    if not listing:
        return None
    text = read_text(view, ntpath.join(pkg, "version.py")) or ""
    m = _VERSION_RE.search(text)
    dist = _dist_info(view, site, name, m.group(1) if m else None)
    version, requires = _metadata(view, dist)
    if version is None:
        version = m.group(1) if m else "unknown"
    exts = [ntpath.join(pkg, real) for low, real in listing.items()
            if low.endswith(".pyd") and not _OPTIONAL_EXTENSION.search(low)]
    lib = ntpath.join(pkg, "lib")  # torchaudio keeps libtorchaudio.pyd in lib\
    exts += [ntpath.join(lib, real) for low, real in view.listdir(lib).items()
             if low.endswith(".pyd") and not _OPTIONAL_EXTENSION.search(low)]
    return CompanionInstall(name, site, version, _torch_requirement(requires),
                            tuple(glob_order(exts)), dist, scope)


def _sites_from_path_entry(entry: str) -> List[str]:
    """Site-packages folders of another environment, guessed from one of its PATH entries
    (candidates; the caller keeps those that hold torch)."""
    e = entry.strip().strip('"').strip().rstrip("\\/").replace("/", "\\")
    low = e.lower()
    if low.endswith("\\site-packages\\torch\\lib"):
        return [e[: -len("\\torch\\lib")]]
    if low.endswith("\\library\\bin"):  # conda
        return [e[: -len("\\library\\bin")] + "\\Lib\\site-packages"]
    if low.endswith("\\scripts"):
        root = e[: -len("\\scripts")]
        # a venv/conda env/python.org install (Lib\site-packages), or a user site
        # (%APPDATA%\Python\PythonXY\Scripts -> %APPDATA%\Python\PythonXY\site-packages)
        return [root + "\\Lib\\site-packages", root + "\\site-packages"]
    return []


def _site_from_path_entry(entry: str) -> Optional[str]:
    """The first candidate of :func:`_sites_from_path_entry` (kept for callers)."""
    sites = _sites_from_path_entry(entry)
    return sites[0] if sites else None


def _norm_key(path: str) -> str:
    return ntpath.normpath(path.replace("/", "\\")).rstrip("\\").lower()


def find_installs(
    view: FileView,
    sys_path: Sequence[str],
    *,
    user_site: Optional[str] = None,
    path_entries: Sequence[str] = (),
    python_version: Optional[str] = None,
) -> Installs:
    """Find every torch (and companion) installation reachable from these folders.

    ``sys_path`` is searched in order: ``site-packages`` folders, and any other entry that
    holds a binary torch (``pip install --target DIR`` plus ``PYTHONPATH``) -- a ``torch``
    folder without DLLs elsewhere (a source checkout in the current directory) is left to the
    source-tree check. Then the user site, then other environments guessed from PATH entries.
    ``python_version`` (``"3.11.9"``) picks the ``_C`` extension CPython would import.
    """
    seen: Dict[str, str] = {}
    order: List[Tuple[str, str, bool]] = []
    user_key = _norm_key(user_site) if user_site else None

    def add(site: Optional[str], scope: str, require_dlls: bool = False) -> None:
        if not site:
            return
        key = _norm_key(site)
        if key in seen:
            return
        seen[key] = scope
        order.append((site.rstrip("\\/"), scope, require_dlls))

    for p in sys_path:
        if not p:
            continue
        key = _norm_key(p)
        if key.endswith(("site-packages", "dist-packages")):
            add(p, "user" if user_key is not None and key == user_key else "env")
        elif not key.endswith(".zip"):
            add(p, "env", require_dlls=True)
    add(user_site, "user")
    for entry in path_entries:
        for site in _sites_from_path_entry(entry):
            add(site, "other")

    torch: List[TorchInstall] = []
    companions: List[CompanionInstall] = []
    for site, scope, require_dlls in order:
        t = _torch_at(view, site, scope, require_dlls=require_dlls, python_version=python_version)
        if t is not None:
            torch.append(t)
        if require_dlls and t is None:
            continue
        for name in COMPANIONS:
            comp = _companion_at(view, site, name, scope)
            if comp is not None:
                companions.append(comp)
    return Installs(tuple(torch), tuple(companions))
