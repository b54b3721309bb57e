"""Yin-Yang and Randman: seeded and deterministic; Yin-Yang equal to the published sets,
with the time-to-first-spike encoding of Göltz et al.; Randman one spike per channel on
smooth manifolds."""

import hashlib

import numpy as np
import pytest

from batsnn.experiments.datasets import batch_spike_trains, load_event_dataset, randman, yin_yang
from batsnn.experiments.datasets.generated import (randman_manifold, yin_yang_class,
                                                   yin_yang_points)

# The published sets (publication_data/*.npy of github.com/lkriener/yin_yang_data_set):
# first point, last point, samples per class, sha256 (first 16 hex digits) of the (x, y)
# float64 bytes and of the int64 labels.
PUBLISHED = {
    "train": (42, 5000, [0.6803075385877797, 0.450499251969543],
              [0.7690797231107925, 0.5883389337522971], [1681, 1702, 1617],
              "b87ce72934ee640c", "534d12acda4f9dbc"),
    "valid": (41, 1000, [0.6805727261759029, 0.3209733938933629],
              [0.7107040957004825, 0.804733352731108], [316, 336, 348],
              "6a395d99dd913aa9", "5a4c2f605814a620"),
    "test": (40, 1000, [0.23409664559563403, 0.4017249751828972],
             [0.32834060537145815, 0.3899830419619741], [350, 316, 334],
             "b03ad5fc113ab4bc", "daa0f8f4e3b37b1d"),
}


def sha16(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_yin_yang_points_equal_the_published_sets(split):
    seed, n, first, last, per_class, h_xy, h_lab = PUBLISHED[split]
    xy, cls = yin_yang_points(n, seed)
    assert xy[0].tolist() == first and xy[-1].tolist() == last
    assert np.bincount(cls).tolist() == per_class
    assert sha16(xy) == h_xy and sha16(cls.astype(np.int64)) == h_lab


def test_yin_yang_classes_by_geometry():
    assert yin_yang_class(0.25, 0.5) == 2 and yin_yang_class(0.75, 0.5) == 2  # the dots
    assert yin_yang_class(0.5, 0.9) == 1  # upper half, away from the right disc
    assert yin_yang_class(0.5, 0.1) == 0  # lower half, away from the left disc
    assert yin_yang_class(0.25, 0.68) == 1  # the ring around the left dot
    assert yin_yang_class(0.75, 0.68) == 0  # around the right dot, outside its dot


def test_yin_yang_encoding():
    ds = yin_yang(tau_s=0.5, sizes={"train": 20, "valid": 5, "test": 5})
    assert ds.channel_shape == (5,) and ds.n_classes == 3
    xy, cls = yin_yang_points(20, 42)
    b = batch_spike_trains(ds, "train", np.arange(20))
    t = b.trains.times[..., 0].numpy()
    v = np.concatenate([xy, 1 - xy], axis=1)
    np.testing.assert_allclose(t[:, :4], (0.15 + v * (2.0 - 0.15)) * 0.5, rtol=1e-15)
    np.testing.assert_allclose(t[:, 4], 0.9 * 0.5)
    assert b.labels.tolist() == cls.tolist()
    assert b.trains.counts.eq(1).all() and b.trains.times.dtype.is_floating_point
    no_bias = yin_yang(t_bias=None, sizes={"train": 3, "valid": 3, "test": 3})
    assert no_bias.channel_shape == (4,)


def test_yin_yang_full_sizes_and_determinism():
    a, b = yin_yang(), load_event_dataset("yin-yang")
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 5000, "valid": 1000,
                                                        "test": 1000}
    for k in a.splits:
        np.testing.assert_array_equal(a[k].times, b[k].times)


def test_randman_one_spike_per_channel_and_deterministic():
    kw = dict(n_classes=3, n_channels=12, dim=1, alpha=2.0, samples_per_class=50,
              duration=0.05, seed=7)
    a, b = randman(**kw), randman(**kw)
    c = randman(**{**kw, "seed": 8})
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 120, "valid": 15, "test": 15}
    for k in a.splits:
        np.testing.assert_array_equal(a[k].times, b[k].times)
        assert (a[k].spike_counts() == 12).all()
    assert not np.array_equal(a["train"].times, c["train"].times)
    times = np.concatenate([a[k].times for k in a.splits])
    assert times.min() >= 0 and times.max() <= 0.05
    # min-max scaling per class and channel: each channel reaches ~0 and ~duration
    tr = batch_spike_trains(a, "train", np.arange(120)).trains.times[..., 0].numpy()
    assert tr.min(axis=0).max() < 0.01 and tr.max(axis=0).min() > 0.04


def test_randman_smoothness_follows_alpha():
    """Larger alpha: a smoother manifold (smaller mean squared step along the coordinate)."""
    x = np.linspace(0, 1, 200)[:, None]
    rough = np.mean([np.mean(np.diff(randman_manifold(np.random.default_rng(s), 20, 1, 1.0)(x),
                                     axis=0) ** 2) for s in range(3)])
    smooth = np.mean([np.mean(np.diff(randman_manifold(np.random.default_rng(s), 20, 1, 3.0)(x),
                                      axis=0) ** 2) for s in range(3)])
    assert smooth < rough


@pytest.mark.parametrize("kwargs, word", [
    ({"n_classes": 0}, "n_classes"), ({"alpha": -1.0}, "alpha"), ({"duration": 0}, "duration"),
    ({"fractions": (0.5, 0.6, 0.1)}, "fractions"), ({"seed": -1}, "seed"),
    ({"samples_per_class": 1}, "empty"),
], ids=lambda v: str(v)[:20])
def test_randman_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        randman(**kwargs)


@pytest.mark.parametrize("kwargs, word", [
    ({"tau_s": 0}, "tau_s"), ({"t_early": 3.0}, "t_early"), ({"t_bias": -1.0}, "t_bias"),
    ({"r_small": 0.3}, "r_small"), ({"sizes": {"train": 0}}, "sizes"),
], ids=lambda v: str(v)[:20])
def test_yin_yang_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        yin_yang(**kwargs)


def test_load_event_dataset_by_name_passes_options():
    r = load_event_dataset("randman", n_classes=2, n_channels=4, dim=1, samples_per_class=10)
    assert r.n_classes == 2 and r.channel_shape == (4,)
    y = load_event_dataset("Yin_Yang", sizes={"train": 4, "valid": 2, "test": 2})
    assert len(y["train"]) == 4
    with pytest.raises(TypeError, match="nmnist takes no options"):
        load_event_dataset("nmnist", ".", max_events=3)


def test_generated_sets_are_made_once_per_process_and_handed_out_as_copies(monkeypatch):
    """load_event_dataset generates a set once per options (the last two kept) and gives
    each caller its own copy: editing one leaves the next caller's intact."""
    import batsnn.experiments.datasets as D

    made = []
    real = D.randman
    monkeypatch.setattr(D, "randman", lambda **kw: made.append(kw) or real(**kw))
    monkeypatch.setattr(D, "_GENERATED", type(D._GENERATED)())
    opts = dict(n_classes=2, n_channels=3, dim=1, samples_per_class=10, seed=11)
    a = load_event_dataset("randman", **opts)
    b = load_event_dataset("randman", **opts)
    assert len(made) == 1 and a is not b
    a["train"].times[:] = -1.0
    assert np.array_equal(b["train"].times, real(**opts)["train"].times)
    load_event_dataset("randman", **{**opts, "seed": 12})
    load_event_dataset("yin-yang", sizes={"train": 6, "valid": 3, "test": 3})  # unhashable
    load_event_dataset("randman", **{**opts, "seed": 13})
    load_event_dataset("randman", **opts)  # pushed out by seeds 12 and 13: made again
    assert [m["seed"] for m in made] == [11, 12, 13, 11]


def test_cached_sets_keep_the_generators_type_checks(monkeypatch):
    """True == 1 and 2.0 == 2 in Python, but the cache keys hold the types: a bool seed or a
    float class count is refused whether or not the int one was generated before."""
    import batsnn.experiments.datasets as D

    monkeypatch.setattr(D, "_GENERATED", type(D._GENERATED)())
    opts = dict(n_classes=2, n_channels=3, dim=1, samples_per_class=10, seed=1)
    load_event_dataset("randman", **opts)
    with pytest.raises((TypeError, ValueError), match="seed"):
        load_event_dataset("randman", **{**opts, "seed": True})
    with pytest.raises((TypeError, ValueError), match="n_classes"):
        load_event_dataset("randman", **{**opts, "n_classes": 2.0})
