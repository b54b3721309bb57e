"""The tonic adapter, on small fake objects with tonic's structure (tonic is not needed)."""

import numpy as np
import pytest

from batsnn.experiments.datasets import batch_spike_trains, from_tonic


class FakeTonic:
    """What a tonic dataset offers: ``sensor_size (W, H, P)``, a structured ``dtype``,
    ``classes``, ``len()`` and ``(events, target)`` items with times in microseconds."""

    def __init__(self, sensor_size, dtype, items, classes=None):
        self.sensor_size, self.dtype, self.items = sensor_size, dtype, items
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
SHD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])


def nmnist_like(rng, n):
    items = []
    for _ in range(n):
        k = int(rng.integers(1, 20))
        ev = np.zeros(k, NMNIST_DTYPE)
        ev["x"], ev["y"] = rng.integers(0, 34, k), rng.integers(0, 34, k)
        ev["p"], ev["t"] = rng.integers(0, 2, k), rng.integers(0, 300_000, k)
        items.append((ev, int(rng.integers(0, 10))))
    return FakeTonic((34, 34, 2), NMNIST_DTYPE, items, classes=[str(i) for i in range(10)])


def test_nmnist_like_object():
    rng = np.random.default_rng(0)
    train, test = nmnist_like(rng, 5), nmnist_like(rng, 3)
    ds = from_tonic(train, test, name="nmnist")
    assert ds.channel_shape == (2, 34, 34) and ds.n_classes == 10
    ev, target = train[2]
    t, c = ds["train"].sample(2)
    want = sorted(zip((ev["p"] * 1156 + ev["y"] * 34 + ev["x"]).tolist(),
                      (ev["t"] * 1e-6).tolist()))
    assert list(zip(c.tolist(), t.tolist())) == want
    assert ds["train"].labels[2] == target
    b = batch_spike_trains(ds, "test", [0, 1, 2], maps=True)
    assert b.trains.times.shape[:4] == (3, 2, 34, 34)


def test_shd_like_object_with_validation():
    ev = np.zeros(3, SHD_DTYPE)
    ev["x"], ev["t"] = [699, 0, 699], [500_000, 10, 20]
    part = FakeTonic((700, 1, 1), SHD_DTYPE, [(ev, 4), (ev[:1], 1)])
    ds = from_tonic(part, part, valid=part, name="shd")
    assert ds.channel_shape == (700,) and set(ds.splits) == {"train", "valid", "test"}
    assert ds.n_classes == 5  # no classes attribute: one more than the largest label
    t, c = ds["valid"].sample(0)
    assert c.tolist() == [0, 699, 699] and t.tolist() == pytest.approx([10e-6, 20e-6, 0.5])


@pytest.mark.parametrize("make, words", [
    (lambda: FakeTonic(None, SHD_DTYPE, []), "sensor_size"),
    (lambda: FakeTonic((700, 1, 1), SHD_DTYPE, [("not events", 1)]), "structured array"),
    (lambda: FakeTonic((700, 1, 1), SHD_DTYPE, [(np.zeros(1, SHD_DTYPE), "cat")]), "target"),
    (lambda: FakeTonic((700, 1, 1), SHD_DTYPE, [np.zeros(1, SHD_DTYPE)]), "(events, target)"),
], ids=["no-sensor", "bad-events", "bad-target", "not-a-pair"])
def test_bad_objects_are_named(make, words):
    with pytest.raises((TypeError, ValueError), match=words.replace("(", r"\(").replace(")",
                                                                                     r"\)")):
        from_tonic(make(), make())
