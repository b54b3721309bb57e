"""N-MNIST: event files packed here bit by bit from the published description (40-bit events:
x 8 bits, y 8 bits, polarity 1 bit, timestamp 23 bits in microseconds), in the folder and
the zip layouts, read back exactly; batsnn's encoder checked against the same packing."""

import zipfile

import numpy as np
import pytest

from batsnn.experiments.datasets import batch_spike_trains, load_event_dataset
from batsnn.experiments.datasets.nmnist import decode_nmnist, encode_nmnist, read_nmnist_split


def pack(events):
    """``[(x, y, p, t_us), ...]`` as the published 40-bit records, big-endian."""
    return b"".join(((x << 32) | (y << 24) | (p << 23) | t).to_bytes(5, "big")
                    for x, y, p, t in events)


def random_events(rng, k):
    return [(int(rng.integers(0, 34)), int(rng.integers(0, 34)), int(rng.integers(0, 2)),
             int(rng.integers(0, 2**23))) for _ in range(k)]


def write_layout(root, stem, per_digit, rng, as_zip=False):
    """``root/stem/<digit>/<n>.bin`` (or ``root/stem.zip`` holding ``stem/<digit>/...``);
    returns {(digit, name): events}."""
    files = {}
    for digit in range(10):
        for j in range(per_digit):
            files[(digit, f"{j:05d}.bin")] = random_events(rng, int(rng.integers(0, 30)))
    if as_zip:
        with zipfile.ZipFile(root / f"{stem}.zip", "w") as z:
            for (digit, name), ev in files.items():
                z.writestr(f"{stem}/{digit}/{name}", pack(ev))
    else:
        for (digit, name), ev in files.items():
            d = root / stem / str(digit)
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(pack(ev))
    return files


def test_decode_one_known_event():
    raw = pack([(33, 2, 1, 2**23 - 1), (0, 0, 0, 0)])
    t, c = decode_nmnist(raw, "x.bin")
    assert t.tolist() == [(2**23 - 1) * 1e-6, 0.0]
    assert c.tolist() == [1 * 1156 + 2 * 34 + 33, 0]


def test_encoder_matches_the_bit_packing():
    rng = np.random.default_rng(0)
    ev = random_events(rng, 50)
    x, y, p, t = map(np.array, zip(*ev))
    assert encode_nmnist(t, x, y, p) == pack(ev)


@pytest.mark.parametrize("as_zip", [False, True], ids=["folders", "zip"])
def test_round_trip(tmp_path, as_zip):
    rng = np.random.default_rng(1)
    train = write_layout(tmp_path, "Train", 2, rng, as_zip)
    write_layout(tmp_path, "Test", 1, rng, as_zip)
    ds = load_event_dataset("nmnist", tmp_path)
    assert ds.channel_shape == (2, 34, 34) and ds.n_classes == 10
    sp = ds["train"]
    assert len(sp) == 20 and len(ds["test"]) == 10
    for i, ((digit, _), ev) in enumerate(sorted(train.items())):
        assert sp.labels[i] == digit
        t, c = sp.sample(i)
        want = sorted((p * 1156 + y * 34 + x, ts * 1e-6) for x, y, p, ts in ev)
        assert list(zip(c.tolist(), t.tolist())) == want
    assert sp.times.dtype == np.float64
    b = batch_spike_trains(ds, "train", [0, 1], maps=True)
    assert b.trains.times.shape[:4] == (2, 2, 34, 34)


def test_zip_without_top_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "Train.zip", "w") as z:
        z.writestr("3/00001.bin", pack([(1, 2, 0, 5)]))
        z.writestr("README.txt", "not an event file")
    sp = read_nmnist_split(tmp_path / "Train.zip")
    assert sp.labels.tolist() == [3] and sp.channels.tolist() == [2 * 34 + 1]


def test_missing_split_names_source_and_data_dir(tmp_path):
    write_layout(tmp_path, "Train", 1, np.random.default_rng(2))
    with pytest.raises(FileNotFoundError) as e:
        load_event_dataset("nmnist", tmp_path)
    for w in ("Test", "Test.zip", "garrickorchard.com", "--data-dir"):
        assert w in str(e.value)
