"""Files and messages: the one safe file writer, bounded readers of JSON, paths described.

Every file batsnn writes goes through :func:`atomic_write`: the bytes go to a new temporary
file with a unique name in the target directory (created with ``O_CREAT | O_EXCL |
O_NOFOLLOW``, so a file or link planted there is never followed or reused), are flushed to
disk, and the temporary file is renamed over the target (a rename replaces a link at the
target, it does not write through it). A reader or an interrupted run never sees a
half-written file.

Text that comes from files or directories (names, keys, values) reaches the user only
through :func:`printable`, which escapes control characters, so a crafted name cannot send
terminal control sequences. Errors become one line through :func:`one_line`.

This module is part of the library: it imports nothing from :mod:`batsnn.experiments`.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["MAX_NESTING", "OUTPUT_MARKER", "atomic_write", "check_nesting", "check_new_file",
           "describe_path", "loads_json", "one_line", "output_dir_marker", "output_kind",
           "printable"]

#: the deepest nesting of lists and tables batsnn reads from any JSON or TOML file
MAX_NESTING = 64

_UMASK = None


def _file_mode() -> int:
    """``0o666`` less the process umask (what ``open(path, "w")`` would give)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and safely.

    The bytes go to a fresh temporary file in ``path``'s directory (unique name, created
    with ``O_EXCL | O_NOFOLLOW`` by :func:`tempfile.mkstemp`: nothing already there is opened
    or followed), are flushed and fsynced, and the file is renamed to ``path``. If ``path`` is
    a symbolic link, the link itself is replaced, never its target. On any failure the
    temporary file is removed and ``path`` keeps its old content.

    Raises:
        OSError: the directory does not exist or cannot be written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def printable(text, limit: int = 200) -> str:
    """``text`` (any value, turned into ``str``) safe to show on a terminal: every
    unprintable character (the C0 controls, tab and newline included, DEL, the C1 controls,
    ...) is written as its Python escape (``\\x1b``, ``\\t``), and a text longer than
    ``limit`` characters is cut to ``limit`` characters and ``...``."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(e: BaseException) -> str:
    """An exception's message as one line (its lines joined by spaces, whitespace runs
    collapsed); the exception's type name when the message is empty."""
    text = " ".join(str(e).split())
    return text if text else type(e).__name__


def describe_path(path: str | os.PathLike) -> str:
    """What is at ``path``, in words: ``"does not exist"``, ``"is a directory"``, ``"is a
    file"``, ``"is a named pipe (FIFO)"``, ``"is a device"``, ``"is a socket"``, ``"is a
    broken symbolic link"``, or ``"cannot be read (REASON)"``. For messages such as
    ``f"--config {path} {describe_path(path)}, expected a file"``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("is a broken symbolic link" if os.path.islink(path) else "does not exist")
    except NotADirectoryError:
        return "does not exist (a part of the path is a file)"
    except OSError as e:
        return f"cannot be read ({e.strerror or one_line(e)})"
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISREG(mode):
        return "is a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file or directory"


def _nesting(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text, strings skipped."""
    depth = deepest = 0
    in_str = escaped = False
    for c in text:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def check_nesting(obj, name: str, limit: int = MAX_NESTING) -> None:
    """Raise ``ValueError`` naming ``name`` if lists and dicts in ``obj`` nest deeper than
    ``limit`` (checked without recursion, so any depth is safe to check)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            children = o.values()
        elif isinstance(o, (list, tuple)):
            children = o
        else:
            continue
        if d > limit:
            raise ValueError(f"{printable(name)} is nested more than {limit} levels deep")
        stack.extend((c, d + 1) for c in children)


def loads_json(text: str, name: str, limit: int = MAX_NESTING):
    """Parse JSON ``text`` read from ``name`` (a file name, for the message) strictly: at
    most ``limit`` levels of nesting (checked before parsing, so no ``RecursionError``), and
    ``NaN``/``Infinity`` refused. Raises ``ValueError`` naming ``name``."""
    if _nesting(text) > limit:
        raise ValueError(f"{printable(name)} is nested more than {limit} levels deep")

    def constant(c):
        raise ValueError(f"{printable(name)} holds {c}, which strict JSON does not allow")

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"{printable(name)} is not valid JSON: {one_line(e)}") from None
    except RecursionError:
        raise ValueError(f"{printable(name)} is nested too deeply") from None


# ----------------------------------------------------------------------------- single files

#: the field of ``config.json`` (``sweep.json`` for sweeps) that marks a directory batsnn wrote
OUTPUT_MARKER = "batsnn_run"
#: the files that carry :data:`OUTPUT_MARKER` in a batsnn output directory
_MARKED_FILES = ("config.json", "sweep.json")
_MARKED_FILE_LIMIT = 1 << 20  # a marked config is a few kB; larger files are not read


def output_kind(directory: str | os.PathLike,
                limit: int | None = None) -> tuple[Path, str] | tuple[None, None]:
    """The file that marks ``directory`` as batsnn output (its ``config.json`` or
    ``sweep.json``: a regular file, not a link, holding a JSON object whose field
    :data:`OUTPUT_MARKER` is a string) and that field, the kind of output; ``(None, None)``
    when none does. Unreadable and malformed files, and with ``limit`` files larger than
    ``limit`` bytes, mark nothing."""
    for name in _MARKED_FILES:
        f = Path(directory) / name
        try:
            st = os.lstat(f)
            if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
                continue
            doc = loads_json(f.read_text(encoding="utf-8"), str(f))
        except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
            continue
        if isinstance(doc, dict) and isinstance(doc.get(OUTPUT_MARKER), str):
            return f, doc[OUTPUT_MARKER]
    return None, None


def output_dir_marker(directory: str | os.PathLike) -> Path | None:
    """The file that marks ``directory`` as batsnn output (:func:`output_kind`, files of at
    most 1 MiB read), or ``None``."""
    return output_kind(directory, _MARKED_FILE_LIMIT)[0]


def check_new_file(path: str | os.PathLike, what: str, *, overwrite: bool = False,
                   is_own=None, own: str = "a file batsnn wrote",
                   force_hint: str = "overwrite=True") -> Path:
    """Check, before anything is written, that ``path`` may receive a single-file output.

    The rules (each refusal a ``ValueError`` naming ``what`` and the path, shown through
    :func:`printable`):

    - the path is not empty and does not end in a path separator;
    - its directory exists and is a directory (:func:`describe_path` says what it is else);
    - neither that directory nor any directory above it is a batsnn output directory
      (:func:`output_dir_marker`): a run's or a sweep's directory, subdirectories included,
      holds batsnn's own files only (``config.json``, ``best.pt``, ``last.pt``,
      ``metrics.csv``, ...);
    - nothing at the path is a symbolic link (broken or not): batsnn never writes through one;
    - anything else at the path is refused (a directory, a FIFO, a device: described);
    - an existing regular file is replaced only when ``overwrite`` is true **and**
      ``is_own(path)`` (a callable) says batsnn wrote it (``own`` describes such a file for
      the message); ``force_hint`` is how the caller asks for overwriting
      (``"--force"`` on the command line).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the path may not be written (the message says why).
        TypeError: ``path`` is not a str or ``os.PathLike``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes) or not text or text.endswith(os.sep) or \
            (os.altsep and text.endswith(os.altsep)):
        raise ValueError(f"{what} {printable(repr(text))} is not a file name")
    p = Path(text)
    shown = printable(text)
    parent = p.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {shown} cannot be written: its directory "
                         f"{printable(parent)} {describe_path(parent)}")
    for d in (parent, *parent.resolve().parents):  # the directory and every one above it
        marker = output_dir_marker(d)
        if marker is not None:
            raise ValueError(f"{what} {shown} lies in the batsnn output directory "
                             f"{printable(d)} (marked by {marker.name}), which holds "
                             "batsnn's own files only; write it elsewhere")
    if os.path.islink(p):
        raise ValueError(f"{what} {shown} is a symbolic link; batsnn does not write through "
                         "links: give the real path")
    if not os.path.lexists(p):
        return p
    kind = describe_path(p)
    if kind != "is a file":
        raise ValueError(f"{what} {shown} {kind}, expected a new file")
    if not overwrite:
        raise ValueError(f"{what} {shown} already exists; batsnn does not replace a file "
                         f"unless asked to ({force_hint} replaces {own})")
    if is_own is None or not is_own(p):
        raise ValueError(f"{what} {shown} already exists and is not {own}; batsnn replaces "
                         "only its own files")
    return p
