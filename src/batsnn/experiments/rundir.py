"""Output directories: the one safe file writer, the one checkpoint loader, run layout.

Every file batsnn writes goes through :func:`atomic_write`: the bytes go to a new temporary
file with a unique name in the target directory (created with ``O_CREAT | O_EXCL |
O_NOFOLLOW``, so a file or link planted there is never followed or reused), are flushed to
disk, and the temporary file is renamed over the target (a rename replaces a link at the
target, it does not write through it). A reader or an interrupted run never sees a
half-written file. JSON is written strictly (:func:`write_json`: non-finite numbers become
``null``).

Every output directory is checked before anything is written into it
(:func:`prepare_out`; :func:`check_out` checks the same and creates nothing): it must be new,
empty, or a batsnn directory of the same kind, marked by the field :data:`MARKER` in its
``config.json`` (or ``sweep.json``), which only batsnn writes. Names read from the directory
reach messages through :func:`batsnn.fileio.printable`.

One writer per output directory: :func:`hold_out_dir` takes an exclusive lock on the
directory for the time a run or sweep writes into it (``fcntl.flock`` on the file
:data:`LOCK_FILE` inside it, which records the holder's process id). The lock belongs to an
open descriptor, so it is released when the process ends, however it ends: the lock of a
process that died is free by construction. The lock file is removed when the lock is
released and is never counted as content of the directory. It is the one file batsnn writes
in place (its process id, on the locked descriptor) rather than through
:func:`atomic_write`: a lock lives on one inode, which a rename would replace. Default run
directories get names no other process can share (:func:`new_run_dir`).

A training run directory holds (names in :class:`RunDir`):

- ``config.json``: the resolved settings plus run facts (marker, batsnn version, layer
  sizes, device, data source); it reads back as a config (:mod:`batsnn.experiments.config`).
- ``metrics.csv``: one row per completed epoch (columns named in :mod:`batsnn.metrics`).
- ``summary.json``: the last row, the best test accuracy and the epochs completed.
- ``last.pt`` / ``best.pt``: checkpoints (model, optimizer, scheduler, epoch, RNG states,
  metric history, settings), the source of truth of a run: ``metrics.csv`` and
  ``summary.json`` are rewritten from ``last.pt`` whenever a run is resumed or inspected.
- PNG plots.

Checkpoints are read only through :func:`load_checkpoint` (``torch.load`` with
``weights_only=True``: tensors and plain values, never arbitrary objects) and, for training
runs, :func:`load_run_checkpoint`, which also checks their structure. Both raise
:class:`CheckpointError` (a ``ValueError``) with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import numbers
import os
import pickle
import random
import re
import stat
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from batsnn import metrics as M
from batsnn.fileio import (OUTPUT_MARKER, atomic_write, describe_path, loads_json, one_line,
                           output_kind, printable)
from batsnn.metrics import EPOCHS_COMPLETED

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "LOCK_FILE", "MARKER", "OutDirBusy",
           "OutDirError", "RunDir", "RunExists", "atomic_write", "check_out", "dir_entries",
           "hold_out_dir", "load_checkpoint", "load_run_checkpoint", "make_subdir",
           "new_run_dir", "plain", "prepare_out", "read_csv", "read_json", "rng_state",
           "run_kind", "save_checkpoint", "set_rng_state", "write_csv", "write_json"]

#: the field of ``config.json`` (``sweep.json`` for sweeps) that marks a directory written by
#: batsnn; its value is the kind of output: ``train``, ``sweep``, ``convergence`` or
#: ``discretization-error``
MARKER = OUTPUT_MARKER
#: version of the checkpoint layout written by :class:`batsnn.experiments.train.RunRecorder`
CHECKPOINT_FORMAT = 2
#: the lock file inside an output directory held by :func:`hold_out_dir` (it records the
#: holder's process id; not content of the directory)
LOCK_FILE = ".batsnn-lock"


class RunExists(RuntimeError):
    """The output directory already holds a run and ``resume`` was not asked for."""


class OutDirError(ValueError):
    """The output directory cannot be used (a file, not writable, or holding other files)."""


class OutDirBusy(OutDirError):
    """Another process holds the output directory (:func:`hold_out_dir`)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the run it should continue."""


# ----------------------------------------------------------------------------- writing

def plain(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists, tuples into
    lists and ``pathlib`` paths into strings (a deep copy of containers). Raises
    ``TypeError`` naming anything else that is not a number, string, bool, ``None``, tensor,
    dict or list."""
    if obj is None or isinstance(obj, (bool, str, torch.Tensor)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, int) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite_or_null(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_null(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        raise TypeError("Tensor is not JSON serialisable")
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, strict JSON, atomically: NaN and infinities are written as
    ``null`` (never the non-standard ``NaN``/``Infinity``); numpy numbers as numbers."""
    text = json.dumps(_finite_or_null(plain(obj)), indent=2, allow_nan=False)
    atomic_write(path, (text + "\n").encode())


def read_json(path: str | os.PathLike):
    """The JSON value in ``path`` (strict and of bounded nesting: :func:`batsnn.fileio.loads_json`;
    ``ValueError`` naming the file, and the field of an integer too long for Python to
    read, ``sys.get_int_max_str_digits()``)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return loads_json(text, str(path))
    except ValueError as e:
        if "integer string conversion" not in str(e):
            raise
        raise ValueError(f"{printable(path)} holds an integer of more than "
                         f"{sys.get_int_max_str_digits()} digits (field "
                         f"{printable(_long_int_field(text), 120)})") from None


class _LongInt:
    """Stands for an integer too long to convert while :func:`_long_int_field` looks for it."""


def _long_int_field(text: str) -> str:
    """Where the first integer of more than ``sys.get_int_max_str_digits()`` digits lies in
    the JSON ``text`` (already known to nest boundedly), as ``name[0].field``."""
    limit = sys.get_int_max_str_digits()
    doc = json.loads(text, parse_int=lambda v: _LongInt() if len(v.lstrip("-")) > limit
                     else int(v))
    stack = [(doc, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _LongInt):
            return where or "the top level"
        if isinstance(value, dict):
            stack += [(v, f"{where}.{k}" if where else str(k)) for k, v in
                      reversed(value.items())]
        elif isinstance(value, list):
            stack += [(v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value)))]
    return "unknown"


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write dict rows as CSV (header: the first row's keys), atomically; no rows: empty file."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def read_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- directories

def run_kind(path: str | os.PathLike) -> str | None:
    """The kind of batsnn output in directory ``path`` (the :data:`MARKER` field of its
    ``config.json`` or ``sweep.json``, :func:`batsnn.fileio.output_kind`), or ``None`` when
    it holds none."""
    return output_kind(path)[1]


def dir_entries(path: str | os.PathLike) -> list[str]:
    """The names in directory ``path``, sorted, without :data:`LOCK_FILE` (the lock of a
    process writing there, or the one left by a process that was killed: never content)."""
    return sorted(n for n in os.listdir(path) if n != LOCK_FILE)


def _out_name(path: Path) -> str:
    return f"output directory '{printable(path)}'"


def _file_above(path: Path) -> Path | None:
    for p in [path, *path.parents]:
        if p.exists() and not p.is_dir():
            return p
    return None


def _check_place(path: Path, name: str) -> bool:
    """Whether ``path`` is an existing directory (``False``: nothing is there and it can be
    made); ``OutDirError`` for anything else at or above it."""
    try:
        if path.is_symlink() and not path.exists():
            raise OutDirError(f"{name} is a broken symbolic link")
        if path.exists():
            if not path.is_dir():
                raise OutDirError(f"{name} {describe_path(path)}, not a directory")
            return True
        above = _file_above(path)
    except OSError as e:  # a name too long, a part of the path that cannot be searched
        raise OutDirError(f"{name} cannot be used ({e.strerror or one_line(e)})") from None
    if above is not None:
        raise OutDirError(f"{name} cannot be created: '{printable(above)}' "
                          f"{describe_path(above)}")
    return False


def _make_dir(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutDirError(f"{name} cannot be created ({e.strerror or one_line(e)})") from None


def _check_contents(path: Path, name: str, kind: str, resume: bool) -> bool:
    """Whether directory ``path`` holds output of ``kind`` (see :func:`prepare_out`)."""
    try:
        entries = dir_entries(path)
    except OSError as e:
        raise OutDirError(f"{name} cannot be read ({e.strerror})") from None
    if not entries:
        return False
    found = run_kind(path)
    if found is None:
        shown = ", ".join(printable(e, 60) for e in entries[:4]) + (
            ", ..." if len(entries) > 4 else "")
        raise OutDirError(f"{name} is not empty and holds no batsnn output (it has "
                          f"{shown}); batsnn writes only into a new or empty directory "
                          "or into its own output")
    if found != kind:
        raise OutDirError(f"{name} holds a batsnn {printable(found, 40)} output, not a {kind} "
                          "run; choose another directory")
    if not resume:
        raise RunExists(f"{printable(path)} already holds a run; pass --resume to continue it "
                        "or choose another --out")
    return True


def prepare_out(path: str | os.PathLike, kind: str, *, resume: bool = False) -> bool:
    """Check (and create) an output directory before anything is written into it.

    Accepted: a path that does not exist yet (created, with its parents), an empty
    directory (:data:`LOCK_FILE` aside), or a directory holding batsnn output of the same
    ``kind`` (marked by :data:`MARKER`) when ``resume`` is true. The directory must be
    writable (checked by creating and removing a temporary file). Whether another process
    writes into it is checked by :func:`hold_out_dir`, which calls this under its lock.

    Returns:
        whether the directory holds earlier output of ``kind``.

    Raises:
        OutDirError: the path is a file (or a FIFO, a device, ...) or lies under one, cannot
            be created or written, is not empty and holds no batsnn output, or holds output
            of another kind.
        RunExists: it holds output of ``kind`` and ``resume`` is false.
    """
    path = Path(path)
    name = _out_name(path)
    if _check_place(path, name):
        existing = _check_contents(path, name, kind, resume)
    else:
        existing = False
        _make_dir(path, name)
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".batsnn-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutDirError(f"{name} is not writable ({e.strerror})") from None
    return existing


def check_out(path: str | os.PathLike, kind: str, *, resume: bool = False) -> bool:
    """The checks of :func:`prepare_out` and :func:`hold_out_dir` without creating anything:
    for a process that starts others which will write into ``path``. A directory that does
    not exist yet must be creatable (its nearest existing parent a writable directory);
    write permission is checked with ``os.access``.

    Returns:
        whether the directory holds earlier output of ``kind``.

    Raises:
        OutDirBusy: another process holds the directory.
        OutDirError, RunExists: as :func:`prepare_out`.
    """
    path = Path(path)
    name = _out_name(path)
    if _check_place(path, name):
        _check_free(path, name, kind)
        existing = _check_contents(path, name, kind, resume)
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutDirError(f"{name} is not writable (Permission denied)")
        return existing
    parent = next(p for p in path.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutDirError(f"{name} cannot be created ('{printable(parent)}' is not writable)")
    return False


# ----------------------------------------------------------------------------- one writer

# directories this process holds: (st_dev, st_ino) -> [descriptor, depth, pid, lock file]
_HELD: dict[tuple[int, int], list] = {}
_HELD_GUARD = threading.Lock()
#: errors of ``flock`` on file systems that have no locks
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and len(text) < 11 else None


def _busy(name: str, kind: str, pid: int | None) -> OutDirBusy:
    who = f"batsnn process {pid}" if pid else "another batsnn process"
    return OutDirBusy(f"{name} is in use by {who} (a {kind} run writing into it); wait for "
                      "it to end or choose another directory")


def _lock_file_error(name: str, lock: Path, why: str) -> OutDirError:
    return OutDirError(f"{name} cannot be locked: '{printable(lock)}' {why}, expected the "
                       "lock file batsnn makes; remove it")


def _acquire(path: Path, name: str, kind: str) -> int:
    """An open descriptor of ``path/LOCK_FILE`` holding its exclusive lock, with this
    process's id written into the file."""
    lock = path / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    for _ in range(100):
        try:
            fd = os.open(lock, flags, 0o644)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise OutDirError(f"{name} is not writable ({e.strerror})") from None
            if os.path.islink(lock):
                raise _lock_file_error(name, lock, "is a symbolic link") from None
            if os.path.lexists(lock):
                raise _lock_file_error(name, lock, describe_path(lock)) from None
            raise OutDirError(f"{name} cannot be locked ({e.strerror or one_line(e)})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _lock_file_error(name, lock, describe_path(lock))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(name, kind, _read_pid(fd)) from None
            except OSError as e:
                # a file system without locks (some network file systems): the run goes on
                # unguarded rather than not at all
                if e.errno not in _NO_LOCKS:
                    raise OutDirError(f"{name} cannot be locked ({e.strerror})") from None
            try:
                now = os.stat(lock, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        # the holder removed the file between our open and our lock: lock the new one
        os.close(fd)
    raise _busy(name, kind, None)


def _check_free(path: Path, name: str, kind: str) -> None:
    """Raise :class:`OutDirBusy` if another process holds ``path`` (creates nothing)."""
    lock = path / LOCK_FILE
    try:
        st = os.stat(path)
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return  # no lock file (or none that could be held): hold_out_dir says more
    try:
        with _HELD_GUARD:
            held = _HELD.get((st.st_dev, st.st_ino))
            if held is not None and held[2] == os.getpid():
                return
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(name, kind, _read_pid(fd)) from None
            except OSError:
                return
    finally:
        os.close(fd)  # closing drops the shared lock


def _release(key: tuple[int, int]) -> None:
    with _HELD_GUARD:
        held = _HELD[key]
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        fd, lock = held[0], held[3]
        try:  # remove the lock file while still holding it, then let go
            st, now = os.fstat(fd), os.stat(lock, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


@contextlib.contextmanager
def hold_out_dir(path: str | os.PathLike, kind: str, *,
                 resume: bool = False) -> Iterator[bool]:
    """Hold output directory ``path`` as its one writer for the ``with`` block, and check it
    (:func:`prepare_out`) under the lock. Yields whether it holds earlier output of ``kind``.

    The directory is made if it does not exist (a directory holding someone else's files, or
    batsnn output of another kind, is refused before anything is written into it), then
    locked: ``fcntl.flock`` on :data:`LOCK_FILE` inside it, which records this process's id.
    A second process asking for the same directory is refused at once, naming the holder's
    id. The lock is released at the end of the block (the lock file is removed), and by the
    system when the process ends in any way, so a lock left by a killed process never
    blocks. Within one process the hold is re-entrant: a block inside another block for the
    same directory shares its lock, and sequential blocks take it afresh. A directory made
    here is removed again when the block ends in an error and left it empty. On a file
    system that has no locks (``flock`` fails with ``ENOLCK``, ``EOPNOTSUPP``, ...) the
    block runs without one.

    Args:
        path: the output directory.
        kind: the kind of output (``train``, ``sweep``, ...; the :data:`MARKER` value).
        resume: accept a directory holding output of ``kind`` (else :class:`RunExists`).

    Raises:
        OutDirBusy: another process holds the directory.
        OutDirError, RunExists: as :func:`prepare_out`.
    """
    path = Path(path)
    name = _out_name(path)
    created = not _check_place(path, name)
    if created:
        _make_dir(path, name)
    else:
        _check_contents(path, name, kind, True)  # someone else's files stay untouched
    try:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None and held[2] == os.getpid():
                held[1] += 1
            else:
                _HELD[key] = [_acquire(path, name, kind), 1, os.getpid(), path / LOCK_FILE]
    except BaseException as e:
        _remove_if_empty(path, created)
        if isinstance(e, OSError):
            raise OutDirError(f"{name} cannot be locked ({e.strerror or one_line(e)})") from None
        raise
    try:
        yield prepare_out(path, kind, resume=resume)
    except BaseException:
        _release(key)
        _remove_if_empty(path, created)
        raise
    _release(key)


def _remove_if_empty(path: Path, created: bool) -> None:
    """Remove directory ``path`` if this process created it and it is still empty (a run
    refused before writing leaves nothing behind)."""
    if created:
        try:
            os.rmdir(path)
        except OSError:
            pass


def new_run_dir(prefix: str, parent: str | os.PathLike = "runs") -> Path:
    """Create a new, empty directory ``parent/PREFIX-YYYYmmdd-HHMMSS`` for a run that was
    given no output directory, and return it. When that name is taken, ``-2``, ``-3``, ...
    is appended: each candidate is made with ``mkdir``, which fails if the name exists, so
    two processes started in the same second get two directories.

    Raises:
        ValueError: ``prefix`` is empty or holds a path separator or a control character.
        OutDirError: ``parent`` cannot be made or written.
    """
    if (not isinstance(prefix, str) or not prefix or "/" in prefix or os.sep in prefix
            or prefix in (".", "..") or not prefix.isprintable()):
        raise ValueError(f"prefix must be a plain directory name, got '{printable(prefix)}'")
    parent = Path(parent)
    name = _out_name(parent)
    if not _check_place(parent, name):
        _make_dir(parent, name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        path = parent / (f"{prefix}-{stamp}" + (f"-{i}" if i > 1 else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise OutDirError(f"{_out_name(path)} cannot be created "
                              f"({e.strerror or one_line(e)})") from None
    raise OutDirError(f"{name} holds 10000 runs named {printable(prefix)}-{stamp}: choose "
                      "an output directory")


def make_subdir(parent: str | os.PathLike, name: str) -> Path:
    """Create (or reuse) the directory ``parent/name`` that batsnn writes into; refuses a
    symbolic link or a file there (a link could lead writes out of ``parent``)."""
    path = Path(parent) / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        what = "is a symbolic link" if path.is_symlink() else describe_path(path)
        raise OutDirError(f"'{printable(path)}' must be a directory made by batsnn, but it "
                          f"{what}")
    try:
        path.mkdir(exist_ok=True)
    except OSError as e:
        raise OutDirError(f"'{printable(path)}' cannot be created ({e.strerror})") from None
    return path


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` ``state`` to ``path`` atomically. ``state`` may hold only what
    :func:`load_checkpoint` reads back: tensors, numbers, strings, bools, ``None``, dicts and
    lists (numpy numbers are converted; anything else raises ``TypeError``)."""
    buf = io.BytesIO()
    torch.save(_plain_state(state), buf)
    atomic_write(path, buf.getvalue())


def _plain_state(obj):
    # like plain(), but tuples stay tuples (optimizer betas) and int dict keys stay ints
    if isinstance(obj, dict):
        return {k: _plain_state(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain_state(v) for v in obj)
    if isinstance(obj, list):
        return [_plain_state(v) for v in obj]
    return plain(obj)


def _first_sentence(e: BaseException, limit: int = 200) -> str:
    """The first sentence of an exception's message as one line (torch's run on)."""
    return printable(one_line(e).split(". ")[0], limit)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded on the CPU with
    ``torch.load(weights_only=True)``: only tensors and plain values are admitted, so a
    crafted file cannot run code. Tensors are moved to the model's device by
    ``load_state_dict``.

    Raises:
        CheckpointError: missing, truncated, corrupt, or holding other objects (one line
            naming the file).
    """
    path = Path(path)
    shown = printable(path)
    if not path.is_file():
        what = describe_path(path)
        raise CheckpointError(f"checkpoint '{shown}' {what}"
                              + ("" if what.startswith("does not exist") else
                                 ", expected a file"))
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"checkpoint '{shown}' cannot be read ({e.strerror})") from None
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"checkpoint '{shown}' cannot be read: it is not a torch.save "
                              "archive (truncated, corrupt or another file)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise CheckpointError(f"checkpoint '{shown}' cannot be read (corrupt data: "
                                  f"{_first_sentence(e, 120)})") from None
        raise CheckpointError(
            f"checkpoint '{shown}' holds objects other than tensors and plain values "
            f"({found.group(1)}); it was not written by batsnn and is not loaded") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError,
            IndexError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint '{shown}' cannot be read (truncated or corrupt: "
                              f"{_first_sentence(e)})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint '{shown}' does not hold a dict of state, got "
                              f"{type(ck).__name__}")
    return ck


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_run_checkpoint(path: str | os.PathLike) -> dict:
    """A training run's checkpoint (``last.pt``/``best.pt``) read by :func:`load_checkpoint`
    and checked: format marker, epoch and step counts, model and optimizer state, RNG states,
    one metrics row per completed epoch, settings. Whether it fits a given model is checked
    when it is restored (:func:`batsnn.experiments.train.restore_checkpoint`).

    Raises:
        CheckpointError: one line naming the file and what is wrong.
    """
    ck = load_checkpoint(path)
    shown = printable(path)

    def bad(why):
        raise CheckpointError(f"checkpoint '{shown}' is not a usable batsnn training "
                              f"checkpoint: {why}")

    if ck.get("batsnn_checkpoint") != CHECKPOINT_FORMAT:
        bad(f"no format-{CHECKPOINT_FORMAT} marker (written by another program or an older "
            "batsnn)")
    epoch, step = ck.get("epoch"), ck.get("step")
    if not _is_int(epoch) or epoch < 1:
        bad(f"epoch must be an int >= 1, got {epoch!r}")
    if not _is_int(step) or step < 0:
        bad(f"step must be an int >= 0, got {step!r}")
    model = ck.get("model")
    if not isinstance(model, dict) or not model or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        bad("model must be a dict of named tensors")
    opt = ck.get("optimizer")
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                    for g in opt["param_groups"])):
        bad("optimizer must be an optimizer state dict")
    if ck.get("scheduler") is not None and not isinstance(ck["scheduler"], dict):
        bad("scheduler must be a dict or None")
    history = ck.get("history")
    if not isinstance(history, list) or len(history) != epoch:
        bad(f"history must hold one metrics row per completed epoch ({epoch})")
    for i, row in enumerate(history):
        if not (isinstance(row, dict) and row.get(M.EPOCH) == i + 1
                and _is_num(row.get(M.TEST_ACCURACY))):
            bad(f"history row {i} is not the metrics row of epoch {i + 1}")
    if not isinstance(ck.get("config"), dict):
        bad("config must be a dict of settings")
    try:
        _check_rng(ck.get("rng"))
    except ValueError as e:
        bad(str(e))
    return ck


# ----------------------------------------------------------------------------- RNG states

def rng_state() -> dict:
    """The states of every RNG a run uses, as tensors and plain numbers (what
    :func:`load_checkpoint` admits): torch (CPU and every GPU), numpy, Python."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "python": {"version": int(version),
                       "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _check_rng(state) -> None:
    """Raise ``ValueError`` unless ``state`` has the layout of :func:`rng_state`."""
    def bad(why):
        raise ValueError(f"rng state: {why}")

    if not isinstance(state, dict):
        bad("not a dict")
    t = state.get("torch")
    if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8
            and t.shape == torch.get_rng_state().shape):
        bad("torch must be a uint8 tensor of the CPU generator's size")
    n = state.get("numpy")
    if not (isinstance(n, dict) and n.get("name") == "MT19937"
            and isinstance(n.get("keys"), torch.Tensor) and n["keys"].shape == (624,)
            and n["keys"].dtype == torch.int64
            and bool(((n["keys"] >= 0) & (n["keys"] < 2**32)).all())
            and _is_int(n.get("pos")) and 0 <= n["pos"] <= 624
            and _is_int(n.get("has_gauss")) and _is_num(n.get("cached_gaussian"))):
        bad("numpy must be an MT19937 state (624 keys, position, cached gaussian)")
    p = state.get("python")
    if not (isinstance(p, dict) and p.get("version") == 3
            and isinstance(p.get("state"), torch.Tensor) and p["state"].shape == (625,)
            and p["state"].dtype == torch.int64
            and bool(((p["state"] >= 0) & (p["state"] < 2**32)).all())
            and (p.get("gauss") is None or _is_num(p["gauss"]))):
        bad("python must be a version-3 Mersenne Twister state (625 ints)")
    c = state.get("cuda")
    if c is not None and not (isinstance(c, list) and all(
            isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in c)):
        bad("cuda must be None or a list of uint8 tensors")


def set_rng_state(state: dict) -> None:
    """Restore RNG states saved by :func:`rng_state` (GPU states only where CUDA is present,
    one per GPU present). Raises ``ValueError`` for a state of another layout."""
    _check_rng(state)
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)


# ----------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (paths only; nothing is created on construction)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    CONFIG = "config.json"
    METRICS = "metrics.csv"
    SUMMARY = "summary.json"
    LAST = "last.pt"
    BEST = "best.pt"
    PLOTS = ("learning_curves.png", "spikes_per_layer.png", "raster.png")

    @property
    def config(self) -> Path:
        """``config.json``: settings and run facts."""
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        """``metrics.csv``: one row per completed epoch."""
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        """``summary.json``: the last row, best test accuracy, epochs done."""
        return self.path / self.SUMMARY

    @property
    def last(self) -> Path:
        """``last.pt``: the checkpoint after the last completed epoch."""
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        """``best.pt``: the checkpoint of the best test accuracy."""
        return self.path / self.BEST

    def file(self, name: str) -> Path:
        """Any other file of the run, e.g. ``run.file("raster.png")``."""
        return self.path / name

    def has_checkpoint(self) -> bool:
        """Whether a run was started here (``last.pt`` exists)."""
        return self.last.exists()

    def epochs_completed(self) -> int:
        """Epochs recorded in ``summary.json`` (0 when there is none or it is unreadable)."""
        try:
            return int(read_json(self.summary).get(EPOCHS_COMPLETED, 0))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    def is_finished(self, epochs: int) -> bool:
        """Whether at least ``epochs`` epochs are recorded."""
        return self.epochs_completed() >= epochs
