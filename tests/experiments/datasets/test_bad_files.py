"""Every bad SHD/SSC or N-MNIST file is refused with one ValueError naming the file (or the
archive entry) and what is wrong: truncated, not the format, wrong keys or types, NaN,
infinite or negative times, channels or labels out of range, huge declared sizes, gzip and
zip bombs, a directory, FIFO or broken link where a file is expected."""

import gzip
import os
import zipfile

import numpy as np
import pytest

from tests.hostile.harness import LibCase, check_lib

h5py = pytest.importorskip("h5py")

from batsnn.experiments.datasets import load_event_dataset  # noqa: E402
from batsnn.experiments.datasets.heidelberg import (load_heidelberg,  # noqa: E402
                                                    read_heidelberg_file,
                                                    write_heidelberg_file)
from batsnn.experiments.datasets.nmnist import read_nmnist_split  # noqa: E402


def good_samples():
    times = [np.array([0.1, 0.2, 0.3], np.float32), np.array([0.5], np.float32)]
    units = [np.array([0, 5, 699]), np.array([3])]
    return times, units, np.array([0, 19])


def h5(path, times=None, units=None, labels=None, *, t_dtype=np.float32, u_dtype=np.uint16,
       l_dtype=np.uint16, skip=(), labels_shape=None):
    """An SHD-layout file with h5py, with the given defects."""
    t0, u0, l0 = good_samples()
    times = t0 if times is None else times
    units = u0 if units is None else units
    labels = l0 if labels is None else labels
    with h5py.File(path, "w") as f:
        if "times" not in skip:
            t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(t_dtype))
            for i, v in enumerate(times):
                t[i] = np.asarray(v, dtype=t_dtype)
        if "units" not in skip:
            u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(u_dtype))
            for i, v in enumerate(units):
                u[i] = np.asarray(v, dtype=u_dtype)
        if "labels" not in skip:
            if labels_shape is not None:
                f.create_dataset("labels", shape=labels_shape, dtype=l_dtype)
            else:
                f["labels"] = np.asarray(labels, dtype=l_dtype)
    return path


def nm(x, y, p, t):
    return ((x << 32) | (y << 24) | (p << 23) | t).to_bytes(5, "big")


def nmnist_tree(root, skip_digit=None):
    for d in range(10):
        if d == skip_digit:
            continue
        (root / str(d)).mkdir(parents=True)
        (root / str(d) / "00001.bin").write_bytes(nm(1, 1, 0, 10))
    return root


def make_cases(tmp) -> list[LibCase]:
    cases = []

    def shd(name, path, *words, n_classes=20, **kw):
        cases.append(LibCase(name, lambda: read_heidelberg_file(path, n_classes=n_classes, **kw),
                             (ValueError,), (str(path), *words)))

    good = h5(tmp / "good.h5")
    raw = good.read_bytes()
    # not HDF5 at all, empty, truncated
    (tmp / "text.h5").write_text("spikes,units\n1,2\n")
    shd("not-hdf5", tmp / "text.h5", "cannot be read as HDF5")
    (tmp / "empty.h5").write_bytes(b"")
    shd("empty", tmp / "empty.h5", "HDF5")
    (tmp / "trunc.h5").write_bytes(raw[:len(raw) // 2])
    shd("truncated-half", tmp / "trunc.h5")
    (tmp / "trunc-head.h5").write_bytes(raw[:100])
    shd("truncated-header", tmp / "trunc-head.h5", "HDF5")
    # wrong keys and types
    shd("no-units", h5(tmp / "nounits.h5", skip=("units",)), "spikes/units", "SHD/SSC")
    shd("no-times", h5(tmp / "notimes.h5", skip=("times",)), "spikes/times")
    shd("no-labels", h5(tmp / "nolabels.h5", skip=("labels",)), "labels")
    with h5py.File(tmp / "flat.h5", "w") as f:
        f["spikes/times"] = np.zeros(2, np.float32)
        f["spikes/units"] = np.zeros(2, np.uint16)
        f["labels"] = np.zeros(2, np.uint16)
    shd("times-not-vlen", tmp / "flat.h5", "variable-length float")
    shd("units-float", h5(tmp / "ufloat.h5", u_dtype=np.float32), "variable-length integer")
    shd("labels-float", h5(tmp / "lfloat.h5", l_dtype=np.float32), "labels", "integers")
    shd("labels-2d", h5(tmp / "l2d.h5", labels_shape=(2, 2)), "1-D")
    t0, u0, l0 = good_samples()
    shd("shape-mismatch", h5(tmp / "shape.h5", times=t0 + [np.zeros(1)], units=u0 + [[0]]),
        "shape")
    shd("lengths-differ", h5(tmp / "lens.h5", units=[np.array([0, 5]), np.array([3])]),
        "sample 0", "3 times but 2 units")
    # values
    shd("nan-time", h5(tmp / "nan.h5", times=[np.array([0.1, np.nan, 0.3]), t0[1]]),
        "nan", "sample 0")
    shd("inf-time", h5(tmp / "inf.h5", times=[t0[0], np.array([np.inf])]), "inf", "sample 1")
    shd("negative-time", h5(tmp / "neg.h5", times=[t0[0], np.array([-0.5])]), "-0.5",
        "sample 1", ">= 0")
    shd("channel-700", h5(tmp / "ch.h5", units=[np.array([0, 700, 1]), u0[1]]), "channel 700",
        "sample 0", "[0, 700)")
    shd("channel-65535", h5(tmp / "ch2.h5", units=[u0[0], np.array([65535])]),
        "channel 65535", "sample 1")
    shd("label-20", h5(tmp / "lab.h5", labels=[0, 20]), "label 20", "sample 1", "[0, 20)")
    shd("label-negative", h5(tmp / "labn.h5", labels=[-1, 0], l_dtype=np.int16), "label -1")
    shd("label-35-for-shd", h5(tmp / "lab35.h5", labels=[34, 0]), "label 34", n_classes=20)
    shd("no-samples", h5(tmp / "none.h5", times=[], units=[], labels=[]), "no samples")
    # huge declared sizes
    shd("huge-declared-samples", h5(tmp / "huge.h5", labels_shape=(20_000_000,)),
        "20000000 samples")
    shd("too-many-events", good, "more than 3 events", max_events=3)
    # gzip: not gzip, truncated, bomb
    (tmp / "notgz.h5.gz").write_bytes(raw)
    shd("gz-not-gzip", tmp / "notgz.h5.gz", "gzip")
    gz = gzip.compress(raw)
    (tmp / "truncgz.h5.gz").write_bytes(gz[:len(gz) // 2])
    shd("gz-truncated", tmp / "truncgz.h5.gz", "gzip")
    with gzip.open(tmp / "bomb.h5.gz", "wb", compresslevel=9) as f:
        block = bytes(1 << 20)
        for _ in range(80):
            f.write(block)
    shd("gz-bomb", tmp / "bomb.h5.gz", "inflates to more than", "refusing")
    (tmp / "gzholdstext.h5.gz").write_bytes(gzip.compress(b"hello"))
    shd("gz-holds-text", tmp / "gzholdstext.h5.gz", "HDF5")
    # wrong kinds of paths
    (tmp / "adir.h5").mkdir()
    shd("directory", tmp / "adir.h5", "is a directory")
    os.mkfifo(tmp / "fifo.h5")
    shd("fifo", tmp / "fifo.h5", "named pipe")
    os.symlink(tmp / "nowhere.h5", tmp / "broken.h5")
    shd("broken-link", tmp / "broken.h5", "broken symbolic link")
    ctl = tmp / "ctl\x1b[31m.h5"
    ctl.write_text("x")
    cases.append(LibCase("control-chars-escaped",
                         lambda: read_heidelberg_file(ctl, n_classes=20), (ValueError,),
                         ("ctl\\x1b[31m.h5", "HDF5")))
    # load_heidelberg: a directory in place of a split file, data dir not a directory
    d = tmp / "shd-dir"
    d.mkdir()
    write_heidelberg_file(d / "shd_train.h5", *good_samples())
    (d / "shd_test.h5").mkdir()
    cases.append(LibCase("split-file-is-directory", lambda: load_heidelberg("shd", d),
                         (ValueError,), (str(d / "shd_test.h5"), "is a directory")))
    cases.append(LibCase("data-dir-is-file", lambda: load_heidelberg("shd", good),
                         (ValueError,), (str(good), "is a file", "--data-dir")))
    cases.append(LibCase("data-dir-missing",
                         lambda: load_event_dataset("ssc", tmp / "absent"),
                         (ValueError,), (str(tmp / "absent"), "does not exist")))
    cases.append(LibCase("unknown-dataset", lambda: load_event_dataset("shdd", tmp),
                         (ValueError,), ("shdd", "shd, ssc, nmnist")))
    cases.append(LibCase("no-data-dir", lambda: load_event_dataset("shd"),
                         (ValueError,), ("--data-dir",)))

    # N-MNIST
    def nmn(name, path, *words):
        cases.append(LibCase(name, lambda: read_nmnist_split(path), (ValueError,), words))

    t = nmnist_tree(tmp / "nm-trunc" / "Train")
    (t / "4" / "00002.bin").write_bytes(nm(1, 1, 0, 10)[:4])
    nmn("nmnist-truncated", t, str(t / "4" / "00002.bin"), "5-byte events")
    t = nmnist_tree(tmp / "nm-x" / "Train")
    (t / "2" / "00002.bin").write_bytes(nm(1, 1, 0, 10) + nm(40, 3, 1, 10))
    nmn("nmnist-x-out-of-range", t, str(t / "2" / "00002.bin"), "x=40", "34 x 34")
    t = nmnist_tree(tmp / "nm-y" / "Train")
    (t / "2" / "00002.bin").write_bytes(nm(0, 255, 1, 10))
    nmn("nmnist-y-out-of-range", t, "y=255")
    t = nmnist_tree(tmp / "nm-missing" / "Train", skip_digit=7)
    nmn("nmnist-digit-folder-missing", t, str(t / "7"), "digit 7")
    t = nmnist_tree(tmp / "nm-bindir" / "Train")
    (t / "5" / "00009.bin").mkdir()
    nmn("nmnist-bin-is-directory", t, str(t / "5" / "00009.bin"), "is a directory")
    t = nmnist_tree(tmp / "nm-big" / "Train")
    with open(t / "6" / "00003.bin", "wb") as f:
        f.truncate(16 * 2**20 + 5)  # sparse: costs no disk
    nmn("nmnist-file-too-big", t, str(t / "6" / "00003.bin"), "more than")
    t = tmp / "nm-empty" / "Train"
    for dgt in range(10):
        (t / str(dgt)).mkdir(parents=True)
    nmn("nmnist-no-files", t, "holds no N-MNIST event files")
    (tmp / "notzip.zip").write_bytes(b"PK\x03\x04 not really")
    nmn("nmnist-not-zip", tmp / "notzip.zip", str(tmp / "notzip.zip"), "zip")
    with zipfile.ZipFile(tmp / "zbomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Train/1/00001.bin", bytes(17 * 2**20))
    nmn("nmnist-zip-entry-too-big", tmp / "zbomb.zip", "Train/1/00001.bin", "declares")
    with zipfile.ZipFile(tmp / "ztrunc.zip", "w") as z:
        z.writestr("Train/1/00001.bin", nm(1, 1, 1, 1) + b"\x00\x01")
    nmn("nmnist-zip-entry-truncated", tmp / "ztrunc.zip", "Train/1/00001.bin", "5-byte")
    raw_zip = (tmp / "ztrunc.zip").read_bytes()
    (tmp / "zcut.zip").write_bytes(raw_zip[:len(raw_zip) - 30])
    nmn("nmnist-zip-cut", tmp / "zcut.zip", "zip")
    with zipfile.ZipFile(tmp / "znone.zip", "w") as z:
        z.writestr("readme.txt", "nothing")
    nmn("nmnist-zip-no-events", tmp / "znone.zip", "holds no N-MNIST event files")
    (tmp / "nm-fifo").mkdir()
    os.mkfifo(tmp / "nm-fifo" / "Train")
    nmn("nmnist-split-is-fifo", tmp / "nm-fifo" / "Train", "named pipe")
    return cases


def test_bad_files_table(tmp_path):
    check_lib(make_cases(tmp_path))
