"""An in-memory :class:`~torchdll.fsview.FileView` for pure loader-model tests.

Files are declared by Windows path with their PE facts (or just a machine); ``None`` declares
a file that exists but is not a valid image.
"""

from __future__ import annotations

import ntpath
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

from torchdll.errors import InvalidImageError
from torchdll.model import ExportTable, ImageFacts, ImportedModule, Machine

Spec = Union[ImageFacts, Machine, None]


def dll(
    path: str,
    *,
    imports: Mapping[str, Sequence[Union[str, int]]] = {},
    delay: Mapping[str, Sequence[Union[str, int]]] = {},
    exports: Iterable[str] = (),
    ordinals: Mapping[int, str] = {},
    forwarders: Mapping[str, str] = {},
    machine: Machine = Machine.AMD64,
    dependent_load_flags: int = 0,
) -> ImageFacts:
    """Facts of a DLL: ``exports`` by name (ordinals 1..n), ``ordinals`` extra ordinal-only
    exports (ordinal -> label), ``forwarders`` name-or-#N -> forwarder string."""
    all_names = list(exports) + [n for n in forwarders if not n.startswith("#") and n not in exports]
    names = {n: i + 1 for i, n in enumerate(all_names)}
    ords = set(names.values()) | set(ordinals)
    fwd = dict(forwarders)
    for n, target in forwarders.items():
        if not n.startswith("#") and n in names:
            fwd[f"#{names[n]}"] = target
        elif n.startswith("#"):
            ords.add(int(n[1:]))
    table = ExportTable(ntpath.basename(path), 1, names, frozenset(ords), fwd)
    imps = [ImportedModule(d, False, tuple(s for s in syms if isinstance(s, str)),
                           tuple(s for s in syms if isinstance(s, int)))
            for d, syms in imports.items()]
    imps += [ImportedModule(d, True, tuple(s for s in syms if isinstance(s, str)),
                            tuple(s for s in syms if isinstance(s, int)))
             for d, syms in delay.items()]
    return ImageFacts(path=path, size=1024, mtime_ns=0, machine=machine, is_dll=True,
                      dependent_load_flags=dependent_load_flags, imports=tuple(imps),
                      exports=table)


class MemoryView:
    def __init__(self, files: Union[Mapping[str, Spec], Iterable[ImageFacts]] = ()) -> None:
        self.files: Dict[str, Spec] = {}
        self.dirs: Dict[str, Dict[str, str]] = {}
        items = files.items() if isinstance(files, Mapping) else ((f.path, f) for f in files)
        for path, spec in items:
            self.add(path, spec)
        self.facts_calls = 0

    def add(self, path: str, spec: Spec) -> None:
        self.files[path.lower()] = spec
        d, base = ntpath.split(path)
        self.dirs.setdefault(d.rstrip("\\").lower(), {})[base.lower()] = base

    def listdir(self, win_dir: str) -> Mapping[str, str]:
        return self.dirs.get(win_dir.rstrip("\\").lower(), {})

    def host_path(self, win_path: str) -> Optional[str]:
        key = ntpath.normpath(win_path).lower()
        if key in self.files or key.rstrip("\\") in self.dirs:
            return win_path
        return None

    def machine(self, win_path: str) -> Optional[Machine]:
        spec = self.files.get(ntpath.normpath(win_path).lower(), None)
        if isinstance(spec, ImageFacts):
            return spec.machine
        return spec

    def facts(self, win_path: str) -> ImageFacts:
        self.facts_calls += 1
        spec = self.files.get(ntpath.normpath(win_path).lower())
        if isinstance(spec, ImageFacts):
            return spec
        if isinstance(spec, Machine):
            return ImageFacts(path=win_path, size=1, mtime_ns=0, machine=spec, is_dll=True)
        raise InvalidImageError(win_path, "not a valid image (test double)")
