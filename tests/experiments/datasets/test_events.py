"""Event splits and their batches: the vectorised batching against a plain loop, the slot
cap and its dropped-spike count, cropping and scaling, precision, memory refusal, info."""

import math
import time

import numpy as np
import pytest
import torch

from batsnn.experiments.datasets.events import (BatchTooLarge, EventDataset, batch_events,
                                                batch_spike_trains, format_info, info,
                                                iterate_batches, split_from_samples)
from batsnn.spikes import check_spike_times


def random_samples(rng, n, n_channels, max_events=40, dtype=np.float64, duration=1.0):
    """Unsorted random events (duplicates of (channel, time) included)."""
    times, chans = [], []
    for _ in range(n):
        k = int(rng.integers(0, max_events))
        t = rng.uniform(0, duration, k).astype(dtype)
        c = rng.integers(0, n_channels, k)
        if k > 3:  # a repeated event: same channel, same time
            t[1], c[1] = t[0], c[0]
        times.append(t)
        chans.append(c)
    labels = rng.integers(0, 3, n)
    return times, chans, labels


def make_dataset(times, chans, labels, n_channels, shape=None):
    sp = split_from_samples(times, chans, labels, n_channels=n_channels, n_classes=3,
                            source="test")
    return EventDataset("test", shape or (n_channels,), 3, {"train": sp})


def reference_batch(times, chans, idx, n_channels, max_spikes=None, t_start=0.0, t_stop=None,
                    scale=1.0):
    """The plain loop: per sample and channel, the sorted kept times, cut at the cap."""
    lists, cropped = [], []
    for i in idx:
        per = [[] for _ in range(n_channels)]
        cut = 0
        for t, c in zip(times[i], chans[i]):
            if t >= t_start and (t_stop is None or t < t_stop):
                per[c].append((t - t_start) * scale)
            else:
                cut += 1
        lists.append([sorted(p) for p in per])
        cropped.append(cut)
    largest = max((len(p) for s in lists for p in s), default=0)
    slots = max(1, largest if max_spikes is None else min(max_spikes, largest))
    out = np.full((len(idx), n_channels, slots), np.inf)
    counts = np.zeros((len(idx), n_channels), dtype=np.int64)
    dropped = np.zeros(len(idx), dtype=np.int64)
    for b, s in enumerate(lists):
        for c, p in enumerate(s):
            k = min(len(p), slots)
            out[b, c, :k] = p[:k]
            counts[b, c] = k
            dropped[b] += len(p) - k
    return out, counts, dropped, np.array(cropped)


@pytest.mark.parametrize("max_spikes", [None, 1, 2, 5], ids=lambda v: f"cap{v}")
@pytest.mark.parametrize("crop", [(0.0, None, 1.0), (0.2, 0.7, 3.0)], ids=["full", "crop"])
def test_batch_matches_plain_loop(max_spikes, crop):
    rng = np.random.default_rng(1)
    n_ch = 7
    times, chans, labels = random_samples(rng, 30, n_ch)
    ds = make_dataset(times, chans, labels, n_ch)
    idx = np.array([5, 0, 29, 5, 11, 3])
    t_start, t_stop, scale = crop
    b = batch_spike_trains(ds, "train", idx, max_spikes=max_spikes, t_start=t_start,
                           t_stop=t_stop, time_scale=scale)
    ref, counts, dropped, cropped = reference_batch(times, chans, idx, n_ch, max_spikes,
                                                    t_start, t_stop, scale)
    assert b.trains.times.shape == ref.shape
    np.testing.assert_allclose(b.trains.times.numpy(), ref, rtol=1e-12)
    np.testing.assert_array_equal(b.trains.counts.numpy(), counts)
    np.testing.assert_array_equal(b.dropped.numpy(), dropped)
    np.testing.assert_array_equal(b.cropped.numpy(), cropped)
    np.testing.assert_array_equal(b.labels.numpy(), labels[idx])
    if max_spikes is not None and max_spikes <= 2:
        assert b.dropped.sum() > 0, "the case must drop spikes"
    check_spike_times("times", b.trains.times)  # the library's convention holds


def test_batch_events_unsorted_input_matches_sorted():
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 1, 500)
    c = rng.integers(0, 4, 500)
    s = rng.integers(0, 6, 500)
    a = batch_events(t, c, s, 6, 4)
    order = np.lexsort((t, c, s))
    b = batch_events(t[order], c[order], s[order], 6, 4, presorted=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_precision_kept_and_chosen():
    rng = np.random.default_rng(3)
    times, chans, labels = random_samples(rng, 10, 5, dtype=np.float64)
    times[0] = np.array([0.1 + 1e-12, 0.1], dtype=np.float64)  # differ below float32
    chans[0] = np.array([2, 2])
    ds = make_dataset(times, chans, labels, 5)
    b = batch_spike_trains(ds, "train", [0])
    assert b.trains.times.dtype == torch.float64
    assert b.trains.times[0, 2, 1].item() - b.trains.times[0, 2, 0].item() == pytest.approx(
        1e-12, rel=1e-3)
    b32 = batch_spike_trains(ds, "train", [0], dtype=torch.float32)
    assert b32.trains.times.dtype == torch.float32
    times32 = [t.astype(np.float32) for t in times]
    ds32 = make_dataset(times32, chans, labels, 5)
    assert ds32["train"].times.dtype == np.float32
    assert batch_spike_trains(ds32, "train", [1]).trains.times.dtype == torch.float32


def test_maps_shape_and_empty_samples():
    times = [np.array([0.5, 0.1]), np.zeros(0), np.array([0.3])]
    chans = [np.array([7, 7]), np.zeros(0, dtype=np.int64), np.array([0])]
    ds = make_dataset(times, chans, [0, 1, 2], 8, shape=(2, 2, 2))
    b = batch_spike_trains(ds, "train", [0, 1, 2], maps=True)
    assert b.trains.times.shape == (3, 2, 2, 2, 2)
    assert b.trains.times[0, 1, 1, 1].tolist() == [0.1, 0.5]
    assert b.trains.counts[1].sum() == 0 and torch.isinf(b.trains.times[1]).all()
    empty = batch_spike_trains(ds, "train", [1])
    assert empty.trains.times.shape == (1, 8, 1)  # at least one slot, all +inf
    assert torch.isinf(empty.trains.times).all()


def test_memory_estimate_refuses_before_allocating():
    times = [np.linspace(0, 1, 100)]
    chans = [np.zeros(100, dtype=np.int64)]
    ds = make_dataset(times, chans, [0], 50)
    with pytest.raises(BatchTooLarge, match=r"1 samples x 50 channels x 100 spike slots"):
        batch_spike_trains(ds, "train", [0], max_bytes=1000)
    ok = batch_spike_trains(ds, "train", [0], max_bytes=1000, max_spikes=2)
    assert ok.trains.times.shape == (1, 50, 2) and ok.dropped.item() == 98


def test_iterate_batches_covers_every_sample_once():
    rng = np.random.default_rng(4)
    times, chans, labels = random_samples(rng, 23, 3)
    ds = make_dataset(times, chans, labels, 3)
    seen = [b.labels for b in iterate_batches(ds, "train", 5, shuffle=True, seed=1)]
    assert [len(s) for s in seen] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())


def test_split_is_canonical_and_keeps_samples():
    times = [np.array([0.3, 0.1, 0.2]), np.array([0.9])]
    chans = [np.array([1, 1, 0]), np.array([2])]
    sp = split_from_samples(times, chans, [0, 1], n_channels=3, n_classes=2, source="x")
    t, c = sp.sample(0)
    assert c.tolist() == [0, 1, 1] and t.tolist() == [0.2, 0.1, 0.3]
    assert sp.sample(-1)[0].tolist() == [0.9]
    assert sp.spike_counts().tolist() == [3, 1]


def test_info_statistics():
    times = [np.array([0.1, 0.4, 0.2]), np.array([0.9]), np.zeros(0)]
    chans = [np.array([0, 0, 1]), np.array([2]), np.zeros(0, dtype=np.int64)]
    ds = make_dataset(times, chans, [0, 2, 2], 3)
    i = info(ds)["splits"]["train"]
    assert i["samples"] == 3 and i["per_class"] == [1, 0, 2]
    assert i["spikes_per_sample"] == {"min": 0, "mean": pytest.approx(4 / 3), "median": 1.0,
                                      "max": 3}
    assert i["duration_s"]["max"] == pytest.approx(0.9)
    assert i["duration_s"]["min"] == 0.0
    assert i["max_spikes_per_channel"] == 2
    assert i["time_dtype"] == "float64"
    text = format_info(info(ds))
    assert "train: 3 samples" in text and "max 3" in text and "\x1b" not in text


@pytest.mark.parametrize("kwargs, words", [
    ({"max_spikes": 0}, "max_spikes"), ({"max_spikes": 2.5}, "max_spikes"),
    ({"t_start": -1.0}, "t_start"), ({"t_start": math.nan}, "t_start"),
    ({"t_stop": 0.0}, "t_stop"), ({"time_scale": 0}, "time_scale"),
    ({"max_bytes": 0}, "max_bytes"), ({"index": [[0]]}, "index"),
    ({"index": [9]}, "out of range"), ({"index": [0.5]}, "index"),
    ({"dtype": torch.int64}, "dtype"),
], ids=lambda v: str(v)[:30])
def test_bad_settings_are_named(kwargs, words):
    ds = make_dataset([np.array([0.1])], [np.array([0])], [0], 1)
    kwargs = {"index": [0], **kwargs}
    with pytest.raises((ValueError, TypeError), match=words):
        batch_spike_trains(ds, "train", kwargs.pop("index"), **kwargs)


def test_shd_sized_batch_is_fast():
    """A batch of 256 SHD-like samples (700 channels, ~5,000 events each) takes well under a
    second here; an epoch of 8,156 samples is 32 such batches."""
    rng = np.random.default_rng(5)
    n, per = 256, 5000
    times = [np.sort(rng.uniform(0, 1, per)).astype(np.float32) for _ in range(n)]
    chans = [rng.integers(0, 700, per) for _ in range(n)]
    ds = make_dataset(times, chans, np.zeros(n, dtype=np.int64), 700)
    batch_spike_trains(ds, "train", np.arange(8))  # warm up
    t0 = time.perf_counter()
    b = batch_spike_trains(ds, "train", np.arange(n))
    elapsed = time.perf_counter() - t0
    assert b.trains.counts.sum().item() == n * per
    assert elapsed < 3.0, f"{elapsed:.2f} s for one batch"
