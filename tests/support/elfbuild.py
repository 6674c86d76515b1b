"""Synthetic ELF shared objects and programs, built with the host gcc, cached by content.

The ld.so tier (``tests/ldso``) needs small shared libraries with exactly the dynamic-section
facts a scenario asks for: a ``DT_SONAME``, ``DT_NEEDED`` edges, ``DT_RPATH`` or
``DT_RUNPATH`` (``$ORIGIN``, empty entries...), ``DF_1_NODEFLIB``, symbol versions defined
(``Elf_Verdef`` nodes, default ``sym@@V`` or hidden ``sym@V``) and needed (``Elf_Verneed``
entries), undefined symbols referenced through the PLT (resolved lazily under ``RTLD_LAZY``) or
by address (resolved when the object is relocated, whatever the mode). :func:`build_lib`
generates the C source and a version script, runs gcc once and returns the copy it placed in
``out_dir``.

Builds are cached by a hash of everything that goes into them (generated source, version
script, gcc arguments, the bytes of every library linked against, gcc's version) in
``$TORCHDLL_ELF_CACHE``, else ``<$TORCHDLL_TEST_CACHE or the platformdirs user cache
torchdll-tests>/elf``: outside the repository, shared by sessions, safe for concurrent builders
(each entry is written to a temporary folder and renamed into place). A tree receives *copies*
(never hard links) of cached files: two places holding one inode are one object for ld.so,
which matches loaded objects by device and inode. Use :func:`place` to put a deliberate copy,
symbolic link or hard link somewhere.

The libraries are linked with ``-nostdlib`` (no libc, no crt files: nothing but the generated
code), ``--no-as-needed`` (every listed library becomes a ``DT_NEEDED`` entry), ``-z lazy``
(no ``DF_BIND_NOW``, so ``RTLD_LAZY`` really defers PLT relocations), ``-z noseparate-code``
and ``--strip-all`` (5 KB files; ld.so reads only the dynamic symbol table).

Wrong-class objects: this machine's gcc may lack 32-bit multilib support (crt files,
libgcc). An ELFCLASS32 shared object does not need either: :func:`build_lib` with ``m32=True``
links ``-m32 -nostdlib``, which works with the plain x86-64 toolchain. If even that fails,
:func:`elf32_stub` writes a hand-crafted 52-byte ELFCLASS32 header (``ET_DYN``, ``EM_386``):
ld.so decides on ``e_ident[EI_CLASS]`` before it reads anything else, so it rejects that stub
exactly as it rejects a real 32-bit library (skipped during a search, "wrong ELF class:
ELFCLASS32" when opened by path).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Callable, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Bumped whenever the generated code or the gcc command changes meaning.
FORMAT = 4

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BuildError(RuntimeError):
    """gcc failed: the message holds the command, its output and the generated source."""


# --------------------------------------------------------------------------------------------
# tools and the cache
# --------------------------------------------------------------------------------------------


def find_gcc() -> str | None:
    """``$CC`` if set and found, else ``gcc``, else ``cc`` (None: no C compiler)."""
    for cand in (os.environ.get("CC"), "gcc", "cc"):
        if cand:
            path = shutil.which(cand)
            if path:
                return path
    return None


def _gcc() -> str:
    gcc = find_gcc()
    if gcc is None:
        raise FileNotFoundError("gcc")
    return gcc


@functools.cache
def _gcc_identity(gcc: str) -> str:
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0].strip() if out.stdout else "unknown"
    return f"{first}|{gcc}"


def cache_root() -> Path:
    """``$TORCHDLL_ELF_CACHE``, else ``elf`` under the torchdll-tests cache folder."""
    env = os.environ.get("TORCHDLL_ELF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("TORCHDLL_TEST_CACHE")
    if base:
        return Path(base) / "elf"
    try:
        import platformdirs

        return Path(str(platformdirs.user_cache_dir("torchdll-tests", appauthor=False))) / "elf"
    except ImportError:  # pragma: no cover - platformdirs is a dependency of torchdll
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(xdg) / "torchdll-tests" / "elf"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached_build(key_material: Mapping[str, object], file_name: str,
                  build: Callable[[Path], None]) -> Path:
    """Return ``<cache>/<key>/<file_name>``, running ``build(stage_dir)`` on a miss."""
    h = hashlib.sha256(json.dumps(key_material, sort_keys=True, default=str).encode())
    key = h.hexdigest()[:24]
    folder = cache_root() / key[:2] / key
    target = folder / file_name
    if target.is_file():
        try:
            os.utime(str(folder))  # last use, for prune()
        except OSError:
            pass
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=str(folder.parent)))
    try:
        build(stage)
        if not (stage / file_name).is_file():
            raise BuildError(f"the build did not produce {file_name}")
        try:
            os.replace(str(stage), str(folder))
        except OSError:
            if not target.is_file():  # another builder won the race with a broken entry?
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def prune(max_age_days: float = 30.0) -> int:
    """Remove cache entries not used for ``max_age_days``; return how many were removed.

    Every hit touches its entry's folder, so entries that a scenario keeps using stay. (Trees
    whose libraries hold absolute ``DT_RPATH`` entries into a temporary folder produce new
    entries on every run: this keeps them from piling up.)"""
    import time

    root = cache_root()
    if not root.is_dir():
        return 0
    limit = time.time() - max_age_days * 86400
    removed = 0
    for shard in root.iterdir():
        if not shard.is_dir() or len(shard.name) != 2:
            continue
        for entry in shard.iterdir():
            try:
                if entry.is_dir() and entry.stat().st_mtime < limit:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
    return removed


def _run_gcc(argv: Sequence[str], source: str, cwd: Path) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, cwd=str(cwd), check=False)
    if proc.returncode != 0:
        raise BuildError("gcc failed: " + " ".join(argv) + "\n" + proc.stdout + proc.stderr
                         + "\n--- source ---\n" + source)


def copy_out(cached: Path, out_dir: PathLike, file_name: str) -> Path:
    """A fresh copy (own inode) of a cached file in ``out_dir``; replaces what was there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / file_name
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copyfile(str(cached), str(dest))
    os.chmod(str(dest), 0o755)
    return dest


# --------------------------------------------------------------------------------------------
# symbol specifications
# --------------------------------------------------------------------------------------------


def split_symbol(spec: str) -> tuple[str, str | None, bool]:
    """``"f"`` -> (f, None, True); ``"f@@V"`` -> (f, V, True); ``"f@V"`` -> (f, V, False).

    The flag says whether the version is the default one (``@@``); for a *use*, ``f@V`` just
    names the version the reference must carry.
    """
    if "@@" in spec:
        name, ver = spec.split("@@", 1)
        return name, ver, True
    if "@" in spec:
        name, ver = spec.split("@", 1)
        return name, ver, False
    return spec, None, True


def _check_ident(name: str) -> None:
    if not _IDENT.match(name):
        raise ValueError(f"not a C identifier: {name!r}")


def _c_ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _version_script(nodes: Mapping[str, Sequence[str]]) -> str:
    lines = []
    for node, syms in nodes.items():
        if not syms:
            lines.append(f"{node} {{ }};")
        else:
            lines.append(f"{node} {{ global: {'; '.join(syms)}; }};")
    return "\n".join(lines) + "\n"


def generate_source(*, defines: Sequence[str] = (), uses: Sequence[str] = (),
                    refs: Sequence[str] = (), uses_from: str = "function",
                    marker: str = "") -> tuple[str, dict[str, list[str]]]:
    """The C source of a library and the version nodes its ``defines`` imply.

    * every defined symbol is a function returning a constant; a hidden-version definition
      ``f@V`` is a uniquely named function bound to ``f@V`` with ``.symver``;
    * ``uses`` are called from one exported function (``uses_from="function"``: PLT
      relocations, bound lazily under ``RTLD_LAZY``) or from a constructor
      (``"constructor"``: they run while dlopen() initialises the object);
    * ``refs`` are referenced by address from a data table (relocated when the object is
      loaded, even under ``RTLD_LAZY``);
    * a versioned use ``f@V`` is an undefined reference to ``f@V`` (``.symver``), so a
      library linked against must define ``f`` in version ``V``;
    * ``marker`` is a string compiled into the object: copies with different markers have
      different bytes (and hashes) even when their symbols are the same.
    """
    if uses_from not in ("function", "constructor"):
        raise ValueError(f"uses_from must be 'function' or 'constructor', not {uses_from!r}")
    out = ["/* generated by tests/support/elfbuild.py */"]
    nodes: dict[str, list[str]] = {}
    if marker:
        out.append(f"const char tdl_marker_{_c_ident(marker)}[] = {json.dumps(marker)};")
    for k, spec in enumerate(defines):
        name, ver, default = split_symbol(spec)
        _check_ident(name)
        if ver is None:
            out.append(f"int {name}(void) {{ return {k + 1}; }}")
        elif default:
            nodes.setdefault(ver, []).append(name)
            out.append(f"int {name}(void) {{ return {k + 1}; }}")
        else:
            nodes.setdefault(ver, [])
            impl = f"tdl_hidden_{k}_{_c_ident(name)}_{_c_ident(ver)}"
            out.append(f"int {impl}(void) {{ return {k + 1}; }}")
            out.append(f'__asm__(".symver {impl}, {name}@{ver}");')
    calls: list[str] = []
    for group, items in (("use", uses), ("ref", refs)):
        for k, spec in enumerate(items):
            name, ver, _ = split_symbol(spec)
            _check_ident(name)
            if ver is None:
                ident = name
            else:
                ident = f"tdl_{group}_{k}_{_c_ident(name)}_{_c_ident(ver)}"
                out.append(f'__asm__(".symver {ident}, {name}@{ver}");')
            out.append(f"extern int {ident}(void);")
            if group == "use":
                calls.append(ident)
    if uses:
        body = " + ".join(f"{c}()" for c in calls)
        if uses_from == "constructor":
            out.append("volatile int tdl_ctor_result;")
            out.append("__attribute__((constructor)) static void tdl_ctor(void) "
                       f"{{ tdl_ctor_result = {body}; }}")
        else:
            out.append(f"int tdl_use(void) {{ return {body}; }}")
    if refs:
        idents = []
        for k, spec in enumerate(refs):
            name, ver, _ = split_symbol(spec)
            idents.append(name if ver is None else f"tdl_ref_{k}_{_c_ident(name)}_{_c_ident(ver)}")
        out.append("int (*const tdl_refs[])(void) = { " + ", ".join(idents) + " };")
    if not defines and not uses and not refs and not marker:
        out.append("int tdl_empty;")
    return "\n".join(out) + "\n", nodes


# --------------------------------------------------------------------------------------------
# libraries and programs
# --------------------------------------------------------------------------------------------


#: path of a library built here -> what linking against it depends on (its build key without
#: DT_RPATH/DT_RUNPATH/-z nodefaultlib, which a link does not read): a dependent's cache key
#: then does not change when only the search paths of what it links against do (absolute
#: DT_RPATH entries name the tree's folder, which changes from session to session)
_LINK_ID: dict[str, str] = {}


def _needed_args(needed: Iterable[str | PathLike]) -> tuple[list[str], list[str]]:
    """gcc arguments for the libraries to link against, and their contents' digests.

    A path becomes ``-L<dir> -l:<basename>`` (so ``DT_NEEDED`` is the library's soname, or
    its base name when it has none: never the path); ``-lname`` or a bare ``name`` is passed
    as ``-lname`` (a system library such as ``-lm``).
    """
    args: list[str] = []
    digests: list[str] = []
    for item in needed:
        text = os.fspath(item)
        if text.startswith("-l"):
            args.append(text)
            digests.append(text)
        elif "/" in text:
            p = Path(text).resolve()
            args += [f"-L{p.parent}", f"-l:{p.name}"]
            # not the folder: keys stay the same wherever the tree is
            digests.append(f"{p.name}:{_LINK_ID.get(str(p)) or _file_digest(p)}")
        else:
            args.append(f"-l{text}")
            digests.append(f"-l{text}")
    return args, digests


def build_lib(out_dir: PathLike, file_name: str, *, soname: str | None = None,
              needed: Sequence[str | PathLike] = (), rpath: Sequence[str] = (),
              runpath: Sequence[str] = (), defines: Sequence[str] = (),
              uses: Sequence[str] = (), refs: Sequence[str] = (), uses_from: str = "function",
              version_script: Mapping[str, Sequence[str]] | None = None,
              nodeflib: bool = False, m32: bool = False, marker: str = "",
              bind_now: bool = False) -> Path:
    """Build a shared library and put a copy at ``out_dir/file_name``; return that path.

    * ``soname``: ``DT_SONAME`` (none if None);
    * ``needed``: libraries to link against, in ``DT_NEEDED`` order (paths of libraries built
      here, or ``-lm``-style names);
    * ``rpath`` / ``runpath``: entries of ``DT_RPATH`` / ``DT_RUNPATH`` (joined with ``:``, kept
      verbatim: ``$ORIGIN``, empty entries); at most one of the two;
    * ``defines``: ``f``, ``f@@V`` (default version), ``f@V`` (hidden version);
    * ``version_script``: extra version nodes, node -> symbols (a node may be empty); merged
      with the nodes ``defines`` imply, in the order given here first;
    * ``uses`` / ``refs`` / ``uses_from``: undefined references, see :func:`generate_source`;
    * ``nodeflib``: ``-z nodefaultlib`` (``DF_1_NODEFLIB``);
    * ``m32``: an ELFCLASS32 (i386) object; only ``soname``, ``defines`` and ``marker`` apply;
    * ``marker``: a string that makes otherwise identical builds differ;
    * ``bind_now``: ``-z now`` instead of ``-z lazy``.
    """
    if rpath and runpath:
        raise ValueError("DT_RPATH and DT_RUNPATH together are not supported")
    if m32 and (needed or uses or refs):
        raise ValueError("an m32 library cannot link against this machine's libraries")
    source, nodes = generate_source(defines=defines, uses=uses, refs=refs, uses_from=uses_from,
                                    marker=marker)
    merged: dict[str, list[str]] = {}
    for node, syms in (version_script or {}).items():
        merged[node] = list(syms)
    for node, syms in nodes.items():
        merged.setdefault(node, [])
        merged[node] += [s for s in syms if s not in merged[node]]
    script = _version_script(merged) if merged else ""
    gcc = _gcc()
    link_args, digests = _needed_args(needed)
    argv: list[str] = ["-shared", "-fPIC", "-O1", "-nostdlib", "-w"]
    if m32:
        argv.append("-m32")
    argv += ["-Wl,--no-as-needed", "-Wl,-z,now" if bind_now else "-Wl,-z,lazy",
             "-Wl,--hash-style=gnu", "-Wl,--build-id=none",
             # small files (5 KB instead of 14 KB): one page-aligned code segment less, no
             # .symtab (ld.so reads .dynsym only)
             "-Wl,-z,noseparate-code", "-Wl,--strip-all"]
    if soname:
        argv += ["-Xlinker", "-soname", "-Xlinker", soname]
    if rpath:
        argv += ["-Wl,--disable-new-dtags", "-Xlinker", "-rpath", "-Xlinker", ":".join(rpath)]
    if runpath:
        argv += ["-Wl,--enable-new-dtags", "-Xlinker", "-rpath", "-Xlinker", ":".join(runpath)]
    if nodeflib:
        argv.append("-Wl,-z,nodefaultlib")
    if script:
        argv.append("-Wl,--version-script=lib.map")
    key = {"format": FORMAT, "gcc": _gcc_identity(gcc), "argv": argv, "needed": digests,
           "source": source, "script": script, "file": file_name}

    def build(stage: Path) -> None:
        (stage / "lib.c").write_text(source)
        if script:
            (stage / "lib.map").write_text(script)
        cmd = [gcc, *argv, "-o", file_name, "lib.c", *link_args]
        _run_gcc(cmd, source + ("\n--- lib.map ---\n" + script if script else ""), stage)

    try:
        cached = _cached_build(key, file_name, build)
    except BuildError:
        if not m32:
            raise
        # no usable -m32 at all: fall back to a hand-crafted ELFCLASS32 header
        return elf32_stub(out_dir, file_name)
    out = copy_out(cached, out_dir, file_name)
    link_key = {k: v for k, v in key.items() if k != "argv"}
    link_key["argv"] = [a for a in argv if not a.startswith(("-Wl,--disable-new-dtags",
                                                              "-Wl,--enable-new-dtags",
                                                              "-Wl,-z,nodefaultlib"))]
    if rpath or runpath:  # drop "-Xlinker -rpath -Xlinker <value>"
        cleaned: list[str] = []
        skip = 0
        for i, a in enumerate(link_key["argv"]):
            if skip:
                skip -= 1
                continue
            if a == "-Xlinker" and link_key["argv"][i + 1:i + 2] == ["-rpath"]:
                skip = 3
                continue
            cleaned.append(a)
        link_key["argv"] = cleaned
    _LINK_ID[str(out.resolve())] = "link:" + hashlib.sha256(
        json.dumps(link_key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return out


def build_program(out_dir: PathLike, file_name: str, *, source: PathLike | None = None,
                  code: str | None = None, libs: Sequence[str] = (),
                  cflags: Sequence[str] = ("-O2", "-Wall"), rpath: Sequence[str] = (),
                  runpath: Sequence[str] = ()) -> Path:
    """Build an executable from a C file (``source``) or C text (``code``); return its copy
    in ``out_dir`` (its folder is its ``$ORIGIN``)."""
    if (source is None) == (code is None):
        raise ValueError("give exactly one of source and code")
    text = Path(source).read_text() if source is not None else str(code)
    gcc = _gcc()
    argv: list[str] = list(cflags)
    if rpath:
        argv += ["-Wl,--disable-new-dtags", "-Xlinker", "-rpath", "-Xlinker", ":".join(rpath)]
    if runpath:
        argv += ["-Wl,--enable-new-dtags", "-Xlinker", "-rpath", "-Xlinker", ":".join(runpath)]
    key = {"format": FORMAT, "kind": "program", "gcc": _gcc_identity(gcc), "argv": argv,
           "libs": list(libs), "source": text, "file": file_name}

    def build(stage: Path) -> None:
        (stage / "prog.c").write_text(text)
        _run_gcc([gcc, *argv, "-o", file_name, "prog.c", *libs], text, stage)

    return copy_out(_cached_build(key, file_name, build), out_dir, file_name)


# --------------------------------------------------------------------------------------------
# wrong-class objects
# --------------------------------------------------------------------------------------------


def elf32_stub_bytes() -> bytes:
    """A minimal ELFCLASS32 little-endian ``ET_DYN`` i386 header, zero-padded to 512 bytes.

    Enough for ld.so: it checks ``e_ident`` (class first) before anything else and skips a
    wrong-class file found during a search (``open_verify``: "found_other_class"). The padding
    matters: a file shorter than an ``Elf64_Ehdr`` (64 bytes) is rejected earlier, as "file
    too short"."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)  # ELFCLASS32, LSB, EV_CURRENT, SYSV
    head = ident + struct.pack("<HHIIIIIHHHHHH", 3, 3, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    return head + bytes(512 - len(head))


def elf32_stub(out_dir: PathLike, file_name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / file_name
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.write_bytes(elf32_stub_bytes())
    return dest


@functools.cache
def m32_links() -> bool:
    """Whether ``gcc -m32 -shared -nostdlib`` produces an object here (no multilib needed)."""
    gcc = find_gcc()
    if gcc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "t.c").write_text("int tdl_probe(void) { return 1; }\n")
        proc = subprocess.run([gcc, "-m32", "-shared", "-fPIC", "-nostdlib", "-o", "t.so", "t.c"],
                              cwd=tmp, capture_output=True, check=False)
        return proc.returncode == 0 and Path(tmp, "t.so").read_bytes()[4:5] == b"\x01"


@functools.cache
def m32_full_multilib() -> bool:
    """Whether ``gcc -m32`` links against a 32-bit libc (it usually does not: no multilib)."""
    gcc = find_gcc()
    if gcc is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "t.c").write_text("int tdl_probe(void) { return 1; }\n")
        proc = subprocess.run([gcc, "-m32", "-shared", "-fPIC", "-o", "t.so", "t.c"],
                              cwd=tmp, capture_output=True, check=False)
        return proc.returncode == 0


# --------------------------------------------------------------------------------------------
# placing files into trees
# --------------------------------------------------------------------------------------------


def place(src: PathLike, dest: PathLike, how: str = "copy") -> Path:
    """Put ``src`` at ``dest``: ``copy`` (own inode), ``symlink`` (relative link),
    ``abs-symlink`` or ``hardlink`` (same inode: ld.so sees one object)."""
    s, d = Path(src), Path(dest)
    d.parent.mkdir(parents=True, exist_ok=True)
    if d.is_symlink() or d.exists():
        d.unlink()
    if how == "copy":
        shutil.copyfile(str(s), str(d))
        os.chmod(str(d), 0o755)
    elif how == "symlink":
        d.symlink_to(os.path.relpath(str(s.resolve()), str(d.parent.resolve())))
    elif how == "abs-symlink":
        d.symlink_to(s.resolve())
    elif how == "hardlink":
        os.link(str(s), str(d))
    else:
        raise ValueError(f"unknown placement {how!r}")
    return d
