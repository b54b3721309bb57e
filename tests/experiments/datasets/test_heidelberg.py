"""SHD and SSC: files in the published HDF5 layout, written here with h5py directly and by
batsnn's writer, read back exactly; the writer checked against the layout's description."""

import gzip
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from batsnn.experiments.datasets import load_event_dataset  # noqa: E402
from batsnn.experiments.datasets.events import info  # noqa: E402
from batsnn.experiments.datasets.heidelberg import (H5PY_MISSING, load_heidelberg,  # noqa: E402
                                                    read_heidelberg_file,
                                                    synthetic_shd_samples,
                                                    write_heidelberg_file,
                                                    write_synthetic_shd,
                                                    write_synthetic_ssc)


def write_raw(path, times, units, labels, t_dtype=np.float32, extra=True):
    """The published layout written with h5py alone (not batsnn's writer)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        t = g.create_dataset("times", (len(labels),), dtype=h5py.vlen_dtype(t_dtype))
        u = g.create_dataset("units", (len(labels),), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(len(labels)):
            t[i] = np.asarray(times[i], dtype=t_dtype)
            u[i] = np.asarray(units[i], dtype=np.uint16)
        f["labels"] = np.asarray(labels, dtype=np.uint16)
        if extra:
            f["extra/speaker"] = np.zeros(len(labels), dtype=np.uint16)


def samples(seed=0, n=6, dtype=np.float64):
    rng = np.random.default_rng(seed)
    times = [np.sort(rng.uniform(0, 1.2, k)).astype(dtype) for k in rng.integers(0, 50, n)]
    units = [rng.integers(0, 700, len(t)) for t in times]
    return times, units, rng.integers(0, 20, n)


def assert_same_events(split, times, units, labels):
    np.testing.assert_array_equal(split.labels, labels)
    for i in range(len(labels)):
        t, c = split.sample(i)
        order = np.lexsort((times[i], units[i]))
        np.testing.assert_array_equal(c, np.asarray(units[i])[order])
        np.testing.assert_array_equal(t, np.asarray(times[i])[order])


@pytest.mark.parametrize("t_dtype", [np.float16, np.float32, np.float64])
def test_reads_raw_h5py_file(tmp_path, t_dtype):
    times, units, labels = samples(dtype=t_dtype)
    p = tmp_path / "shd_train.h5"
    write_raw(p, times, units, labels, t_dtype)
    sp = read_heidelberg_file(p, n_classes=20)
    assert sp.times.dtype == (np.float64 if t_dtype == np.float64 else np.float32)
    assert_same_events(sp, [t.astype(sp.times.dtype) for t in times], units, labels)


def test_gz_round_trip_and_float64_kept(tmp_path):
    times, units, labels = samples(1, dtype=np.float64)
    raw = tmp_path / "raw.h5"
    write_raw(raw, times, units, labels, np.float64)
    gz = tmp_path / "shd_test.h5.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    sp = read_heidelberg_file(gz, n_classes=20)
    assert sp.times.dtype == np.float64
    assert_same_events(sp, times, units, labels)


def test_writer_follows_the_published_layout(tmp_path):
    times, units, labels = samples(2, dtype=np.float32)
    p = tmp_path / "w.h5"
    write_heidelberg_file(p, times, units, labels)
    with h5py.File(p, "r") as f:
        assert set(f.keys()) >= {"spikes", "labels"}
        assert set(f["spikes"].keys()) == {"times", "units"}
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["labels"].shape == (len(labels),) and f["labels"].dtype == np.uint16
        for i in range(len(labels)):
            np.testing.assert_array_equal(f["spikes/times"][i], times[i])
            np.testing.assert_array_equal(f["spikes/units"][i], units[i])
    pz = tmp_path / "w.h5.gz"
    write_heidelberg_file(pz, times, units, labels)
    assert pz.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(pz.read_bytes())[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5 signature


def test_load_ssc_with_validation_split(tmp_path):
    for k, stem in enumerate(("ssc_train", "ssc_valid", "ssc_test")):
        times, units, labels = samples(10 + k)
        labels = labels + 15  # SSC has 35 classes
        suffix = ".h5.gz" if stem == "ssc_valid" else ".h5"
        write_heidelberg_file(tmp_path / (stem + suffix), times, units, labels)
    ds = load_event_dataset("ssc", tmp_path)
    assert set(ds.splits) == {"train", "valid", "test"}
    assert ds.n_classes == 35 and ds.channel_shape == (700,)
    assert ds["valid"].labels.max() >= 20


def test_missing_file_names_file_source_and_data_dir(tmp_path):
    times, units, labels = samples()
    write_heidelberg_file(tmp_path / "shd_train.h5", times, units, labels)
    with pytest.raises(FileNotFoundError) as e:
        load_heidelberg("shd", tmp_path)
    msg = str(e.value)
    for w in ("shd_test.h5", "zenkelab.org", "--data-dir"):
        assert w in msg


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "batsnn\[events\]"'):
        read_heidelberg_file(tmp_path / "x.h5", n_classes=20)
    assert "batsnn[events]" in H5PY_MISSING


def test_synthetic_shd_files(tmp_path):
    paths = write_synthetic_shd(tmp_path, n_train=40, n_test=20, seed=3, compress=True)
    assert [p.name for p in paths] == ["shd_train.h5.gz", "shd_test.h5.gz"]
    ds = load_heidelberg("shd", tmp_path)
    sp = ds["train"]
    counts = sp.spike_counts()
    assert 1000 < np.median(counts) < 20000  # several thousand events per sample
    assert sp.times.max() < 1.1 and sp.channels.max() < 700
    assert sorted(set(sp.labels.tolist())) == list(range(20))
    again = synthetic_shd_samples(40, seed=3)
    assert np.array_equal(np.bincount(again[2]), np.bincount(sp.labels))
    assert sum(len(t) for t in again[0]) == sp.times.size
    i = info(ds)["splits"]
    assert i["train"]["samples"] == 40 and i["test"]["samples"] == 20
    assert 0.3 < i["train"]["duration_s"]["min"] and i["train"]["duration_s"]["max"] < 1.1


def test_synthetic_ssc_files(tmp_path):
    """SSC's three files and 35 classes, read back by the SSC loader; split k drawn with
    seed + k as for SHD."""
    paths = write_synthetic_ssc(tmp_path, n_train=70, n_valid=35, n_test=35, seed=5)
    assert [p.name for p in paths] == ["ssc_train.h5", "ssc_valid.h5", "ssc_test.h5"]
    ds = load_heidelberg("ssc", tmp_path)
    assert [len(ds[s].labels) for s in ("train", "valid", "test")] == [70, 35, 35]
    assert sorted(set(ds["train"].labels.tolist())) == list(range(35))
    valid = synthetic_shd_samples(35, seed=6, n_classes=35)
    assert sum(len(t) for t in valid[0]) == ds["valid"].times.size
    with pytest.raises(ValueError, match="expected a directory"):
        write_synthetic_ssc(tmp_path / "ssc_train.h5")
    empty = tmp_path / "empty"
    empty.mkdir()
    for kw, match in (({"n_valid": -1}, "n_valid must be an int >= 1, got -1"),
                      ({"n_train": "3"}, "n_train must be an int >= 1, got '3'"),
                      ({"seed": -5}, "seed must be an int >= 0, got -5")):
        with pytest.raises(ValueError, match=match):
            write_synthetic_ssc(empty, **kw)
        with pytest.raises(ValueError, match=match.replace("n_valid", "n_test")
                           if "n_valid" in match else match):
            write_synthetic_shd(empty, **({"n_test": -1} if "n_valid" in kw else kw))
    assert list(empty.iterdir()) == []  # nothing written before the check
