"""Small data for the tutorials: Fashion-MNIST when it is installed, else a synthetic set of
the same layout.

Fashion-MNIST is read from ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``) or from ``$BATSNN_TUTORIAL_DATA``. Without it, a synthetic
dataset in the IDX layout (28x28 images whose class is a bright bar at a class-dependent
row) is written, so that every tutorial runs anywhere; its accuracies are not those of
Fashion-MNIST.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from batsnn.experiments import data

FASHION_MNIST = Path(os.environ.get("BATSNN_TUTORIAL_DATA",
                                    "/usr/share/datasets/fashion-mnist"))
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _installed(directory: Path) -> bool:
    return all((directory / f).exists() or (directory / (f + ".gz")).exists() for f in FILES)


def write_synthetic(directory: Path, n_train: int = 1000, n_test: int = 500,
                    seed: int = 0) -> Path:
    """Write a synthetic 10-class dataset in the IDX layout into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 80).astype(np.uint8)
        for i, c in enumerate(y):
            r = 2 + 2 * int(c)
            x[i, r:r + 3, 4:24] = 250
        data.write_idx(directory / f"{part}-images-idx3-ubyte", x)
        data.write_idx(directory / f"{part}-labels-idx1-ubyte", y)
    return directory


def data_dir(workdir: str | os.PathLike = ".") -> Path:
    """A directory holding Fashion-MNIST (or the synthetic stand-in) as IDX files."""
    if _installed(FASHION_MNIST):
        return FASHION_MNIST
    return write_synthetic(Path(workdir) / "synthetic-fmnist")


def small_fashion_mnist(n_train: int = 1000, n_test: int = 500, workdir="."):
    """``(train_x, train_y, test_x, test_y)``: images as floats in [0, 1], ``(N, 784)``,
    labels int64; the first ``n_train``/``n_test`` samples."""
    ds = data.load_dataset("fashion-mnist", data_dir(workdir)).subset(n_train, n_test)
    return (ds.train_x.to(torch.float32) / 255, ds.train_y,
            ds.test_x.to(torch.float32) / 255, ds.test_y)
