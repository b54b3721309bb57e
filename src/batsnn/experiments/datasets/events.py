"""Event-stream datasets: samples as lists of ``(time, channel)`` events, and their batches
as batsnn spike trains.

A split (:class:`EventSplit`) holds every sample's events in three flat arrays, the layout
of a sparse row matrix: ``times`` (seconds), ``channels`` (flat channel index) and
``offsets`` (sample ``i`` owns events ``offsets[i]:offsets[i + 1]``), plus one label per
sample. Events are kept in canonical order, by (sample, channel, time), so that a batch is
built without sorting: gather the samples' events, rank each event within its
(sample, channel) group, scatter into a ``(batch, channels, slots)`` array padded with
``+inf`` (:func:`batch_spike_trains`).

Times stay in the precision of their source: float64 where the file holds float64, else
float32. A dataset (:class:`EventDataset`) is a name, the shape of its channels (``(700,)``
for SHD, ``(2, 34, 34)`` for N-MNIST), the number of classes and its splits (``train``,
``test``, and ``valid`` where the dataset publishes one).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from batsnn.fileio import printable
from batsnn.spikes import SpikeTrains

__all__ = ["BatchTooLarge", "EventBatch", "EventDataset", "EventSplit", "batch_events",
           "batch_spike_trains", "check_batch_settings", "check_split", "format_info", "info", "iterate_batches",
           "machine_memory", "split_from_samples"]


class BatchTooLarge(ValueError, MemoryError):
    """A batch's spike-time array would exceed the memory allowed; the message names the
    sizes. Both a ``ValueError`` (a setting to change) and a ``MemoryError``."""


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` when unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _time_dtype(dtype) -> np.dtype:
    """float64 stays float64; every other float (float16, float32) becomes float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


@dataclass(frozen=True)
class EventSplit:
    """One split of an event dataset, every sample's events in flat arrays.

    Attributes:
        times: ``(E,)`` float32 or float64 event times in seconds, finite and >= 0.
        channels: ``(E,)`` int32 flat channel index of each event.
        offsets: ``(N + 1,)`` int64; sample ``i`` owns events ``offsets[i]:offsets[i+1]``.
        labels: ``(N,)`` int64 class of each sample.
        source: where the split came from (a file name or a generator), for messages.

    Within a sample the events are sorted by channel, then time (see
    :func:`split_from_samples`, which builds a split from per-sample arrays and checks it).
    """

    times: np.ndarray
    channels: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The events of sample ``i``: ``(times, channels)``, by channel then time."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        i %= len(self)
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.times[a:b], self.channels[a:b]

    def spike_counts(self) -> np.ndarray:
        """``(N,)`` int64 number of events of each sample."""
        return np.diff(self.offsets)


def split_from_samples(times, channels, labels, *, n_channels: int, n_classes: int,
                       source: str) -> EventSplit:
    """Build an :class:`EventSplit` from per-sample event arrays, checking every value.

    Args:
        times: a sequence of N 1-D float arrays, the event times of each sample in seconds.
        channels: a sequence of N 1-D integer arrays of the same lengths, flat channel
            indices in ``[0, n_channels)``.
        labels: N integer labels in ``[0, n_classes)``.
        n_channels, n_classes: the dataset's sizes.
        source: the file (or generator) the samples came from; every error names it.

    Times are kept as float64 when they come as float64, else stored as float32; events
    are put in (sample, channel, time) order.

    Raises:
        ValueError: naming ``source``, the sample and the value: lengths differ, a time is
            NaN, infinite or negative, a channel or label is out of range, no samples.
    """
    src = printable(source)
    n = len(labels)
    if len(times) != n or len(channels) != n:
        raise ValueError(f"{src}: {n} labels but {len(times)} time lists and {len(channels)} "
                         f"channel lists")
    if n == 0:
        raise ValueError(f"{src} holds no samples")
    lens = np.fromiter((len(t) for t in times), dtype=np.int64, count=n)
    clens = np.fromiter((len(c) for c in channels), dtype=np.int64, count=n)
    if not np.array_equal(lens, clens):
        i = int(np.flatnonzero(lens != clens)[0])
        raise ValueError(f"{src}: sample {i} has {lens[i]} times but {clens[i]} channels")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    for t in times:
        if not np.issubdtype(np.asarray(t).dtype, np.number):
            raise ValueError(f"{src}: event times must be numbers, got {np.asarray(t).dtype}")
    for c in channels:
        if not np.issubdtype(np.asarray(c).dtype, np.integer):
            raise ValueError(f"{src}: channels must be integers, got {np.asarray(c).dtype}")
    flat_t = np.concatenate([np.asarray(t).ravel() for t in times])
    flat_t = flat_t.astype(_time_dtype(flat_t.dtype), copy=False)
    flat_c = np.concatenate([np.asarray(c, dtype=np.int64).ravel() for c in channels])
    labels = np.asarray(labels)
    return check_split(flat_t, flat_c, offsets, labels, n_channels=n_channels,
                       n_classes=n_classes, source=source)


def _canonical(times, channels, sample_of) -> bool:
    """Whether events are already in (sample, channel, time) order (one vectorised pass)."""
    if len(times) < 2:
        return True
    same_sample = sample_of[1:] == sample_of[:-1]
    dc = channels[1:].astype(np.int64) - channels[:-1]
    ordered = (dc > 0) | ((dc == 0) & (times[1:] >= times[:-1]))
    return bool(np.all(ordered | ~same_sample))


def check_split(times, channels, offsets, labels, *, n_channels: int, n_classes: int,
                source: str) -> EventSplit:
    """Check flat event arrays (see :class:`EventSplit`) and return them as a split in
    canonical order. Raises ``ValueError`` naming ``source``, the sample and the value."""
    src = printable(source)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{src}: labels must be a 1-D array of integers, got {labels.dtype} "
                         f"of shape {labels.shape}")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{src}: label {labels[i]} of sample {i} is out of range "
                         f"[0, {n_classes})")
    sample_of = np.repeat(np.arange(len(labels)), np.diff(offsets))
    bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if bad.size:
        e = int(bad[0])
        raise ValueError(f"{src}: event time {float(times[e])} of sample {int(sample_of[e])} "
                         f"is not a finite time >= 0 seconds")
    bad = np.flatnonzero((channels < 0) | (channels >= n_channels))
    if bad.size:
        e = int(bad[0])
        raise ValueError(f"{src}: channel {int(channels[e])} of sample {int(sample_of[e])} is "
                         f"out of range [0, {n_channels})")
    if not _canonical(times, channels, sample_of):
        group = sample_of * np.int64(n_channels) + channels
        same = sample_of[1:] == sample_of[:-1]
        if np.all((times[1:] >= times[:-1]) | ~same):
            # time-ordered samples (the usual recording order): one stable sort by group
            order = np.argsort(group, kind="stable")
        else:
            order = np.lexsort((times, group))
        times, channels = times[order], channels[order]
    return EventSplit(np.ascontiguousarray(times), channels.astype(np.int32), offsets,
                      labels, str(source))


@dataclass(frozen=True)
class EventDataset:
    """An event-stream dataset: its splits and the shape of its input.

    Attributes:
        name: e.g. ``"shd"``, ``"ssc"``, ``"nmnist"``, ``"yin-yang"``, ``"randman"``.
        channel_shape: the shape of one sample's channels: ``(700,)`` for SHD and SSC,
            ``(2, 34, 34)`` (polarity, y, x) for N-MNIST; flat channel ``c`` is the
            row-major index into it.
        n_classes: number of classes; labels are in ``[0, n_classes)``.
        splits: ``"train"``, ``"test"`` and, where published, ``"valid"``.
        notes: free text shown by :func:`info` (encoding, parameters, sources).
    """

    name: str
    channel_shape: tuple
    n_classes: int
    splits: dict
    notes: str = ""

    @property
    def n_channels(self) -> int:
        """Number of flat input channels (the product of :attr:`channel_shape`)."""
        return math.prod(self.channel_shape)

    def __getitem__(self, split: str) -> EventSplit:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; it has "
                           f"{', '.join(self.splits)}")
        return self.splits[split]


class EventBatch(NamedTuple):
    """A batch of samples as spike trains.

    Attributes:
        trains: ``SpikeTrains(times (B, *channel_shape, S), counts (B, *channel_shape))``.
        labels: ``(B,)`` int64.
        dropped: ``(B,)`` int64 number of each sample's spikes that did not fit the slot cap
            ``max_spikes`` (never silently lost: 0 when nothing was cut).
        cropped: ``(B,)`` int64 number of each sample's events outside ``[t_start, t_stop)``.
    """

    trains: SpikeTrains
    labels: torch.Tensor
    dropped: torch.Tensor
    cropped: torch.Tensor


def check_batch_settings(max_spikes, t_start, t_stop, time_scale, max_bytes) -> None:
    """Raise ``ValueError`` naming the first bad setting of :func:`batch_spike_trains`
    (``max_spikes``, ``t_start``, ``t_stop``, ``time_scale``, ``max_bytes``)."""
    if max_spikes is not None and (isinstance(max_spikes, bool)
                                   or not isinstance(max_spikes, (int, np.integer))
                                   or max_spikes < 1):
        raise ValueError(f"max_spikes must be an integer >= 1 or None, got {max_spikes!r}")
    for name, v in (("t_start", t_start), ("time_scale", time_scale)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if t_start < 0:
        raise ValueError(f"t_start must be >= 0 seconds, got {t_start!r}")
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
    if t_stop is not None:
        if isinstance(t_stop, bool) or not isinstance(t_stop, (int, float, np.number)) \
                or math.isnan(t_stop) or t_stop <= t_start:
            raise ValueError(f"t_stop must be a number > t_start ({t_start!r}) or None, got "
                             f"{t_stop!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool)
                                  or not isinstance(max_bytes, (int, np.integer))
                                  or max_bytes < 1):
        raise ValueError(f"max_bytes must be an integer >= 1 or None, got {max_bytes!r}")


def batch_events(times: np.ndarray, channels: np.ndarray, sample_of: np.ndarray,
                 n_samples: int, n_channels: int, *, max_spikes: int | None = None,
                 presorted: bool = False, max_bytes: int | None = None,
                 dtype=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scatter events into padded spike-time arrays, vectorised.

    Args:
        times: ``(E,)`` float event times (already cropped and scaled).
        channels: ``(E,)`` integer flat channels in ``[0, n_channels)``.
        sample_of: ``(E,)`` integer sample of each event in ``[0, n_samples)``.
        n_samples: samples in the batch (the output's first axis).
        n_channels: input channels (the output's second axis).
        max_spikes: cap on the slots per channel, or ``None`` for the batch's largest count.
        presorted: the events are already in (sample, channel, time) order (skips the sort).
        max_bytes: refuse (:class:`BatchTooLarge`) an output array larger than this; default
            half of this machine's memory.
        dtype: numpy float dtype of the output times (default: that of ``times``).

    Returns:
        ``times (n_samples, n_channels, S)`` ascending, ``+inf`` padded, with
        ``S = max(1, min(max_spikes, largest count))``; ``counts (n_samples, n_channels)``
        int64 (kept spikes); ``dropped (n_samples,)`` int64 spikes beyond the cap.

    Method: sort by the key (sample, channel, time) (``np.lexsort``), rank each event
    within its (sample, channel) group (its position minus the group's first position),
    keep ranks below ``S``, scatter ``out[group, rank] = time``.
    """
    dtype = np.dtype(dtype or times.dtype)
    group = sample_of.astype(np.int64) * n_channels + channels
    if not presorted and len(group):
        order = np.lexsort((times, group))
        times, group = times[order], group[order]
    n_groups = n_samples * n_channels
    full = np.bincount(group, minlength=n_groups) if len(group) else np.zeros(n_groups,
                                                                                np.int64)
    largest = int(full.max()) if n_groups else 0
    slots = max(1, largest if max_spikes is None else min(max_spikes, largest))
    need = n_groups * slots * dtype.itemsize
    limit = max_bytes
    if limit is None:
        memory = machine_memory()
        limit = memory // 2 if memory else None
    if limit is not None and need > limit:
        raise BatchTooLarge(f"a batch of {n_samples} samples x {n_channels} channels x {slots} "
                          f"spike slots of {dtype} needs {need / 2**20:.1f} MiB, more than "
                          f"the {limit / 2**20:.1f} MiB allowed; use a smaller batch or cap "
                          f"the slots with max_spikes")
    out = np.full((n_groups, slots), np.inf, dtype=dtype)
    if len(group):
        # first position of each event's group: positions where the group changes, carried
        # forward with a running maximum; rank = position - first position of its group.
        pos = np.arange(len(group))
        start = np.zeros(len(group), dtype=np.int64)
        change = np.flatnonzero(group[1:] != group[:-1]) + 1
        start[change] = change
        np.maximum.accumulate(start, out=start)
        rank = pos - start
        keep = rank < slots
        out[group[keep], rank[keep]] = times[keep]
    counts = np.minimum(full, slots)
    dropped = (full - counts).reshape(n_samples, n_channels).sum(axis=1)
    return (out.reshape(n_samples, n_channels, slots), counts.reshape(n_samples, n_channels),
            dropped)


def batch_spike_trains(dataset: EventDataset, split: str | EventSplit, index, *,
                       max_spikes: int | None = None, t_start: float = 0.0,
                       t_stop: float | None = None, time_scale: float = 1.0,
                       maps: bool = False, dtype: torch.dtype | None = None,
                       device=None, max_bytes: int | None = None) -> EventBatch:
    """Turn samples of a split into batsnn spike trains.

    Args:
        dataset: the dataset (for its channel shape).
        split: a split name (``"train"``, ``"test"``, ``"valid"``) or an :class:`EventSplit`.
        index: the samples of the batch: integer array-like (or a slice).
        max_spikes: cap on the spike slots per channel; spikes beyond it are counted in
            ``dropped``. ``None``: the slot count is the batch's largest per-channel count.
        t_start, t_stop: keep events with ``t_start <= t < t_stop`` (seconds, in the
            dataset's time); the others are counted in ``cropped``.
        time_scale: kept times become ``(t - t_start) * time_scale`` seconds.
        maps: shape the channels as :attr:`EventDataset.channel_shape` (``(B, 2, 34, 34, S)``
            for N-MNIST, for convolutional layers) instead of flat ``(B, C, S)``.
        dtype: float32 or float64 output times; default: the split's precision.
        device: torch device of the output.
        max_bytes: the largest output the call may allocate (default half the machine's
            memory); a larger batch raises :class:`BatchTooLarge` naming the sizes.

    Returns:
        :class:`EventBatch`: spike times ascending per channel, ``+inf`` padded, counts,
        labels, and the numbers of dropped and cropped events per sample.
    """
    check_batch_settings(max_spikes, t_start, t_stop, time_scale, max_bytes)
    sp = dataset[split] if isinstance(split, str) else split
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    idx = np.arange(len(sp))[index] if isinstance(index, slice) else np.asarray(index)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise ValueError(f"index must be a 1-D array of sample indices, got {idx.dtype} of "
                         f"shape {idx.shape}")
    if idx.size and (idx.min() < -len(sp) or idx.max() >= len(sp)):
        raise ValueError(f"index holds samples out of range for {len(sp)} samples "
                         f"({int(idx.min())}..{int(idx.max())})")
    idx = idx.astype(np.int64) % max(len(sp), 1)
    starts, lens = sp.offsets[idx], np.diff(sp.offsets)[idx]
    n_batch = len(idx)
    # gather: event e of batch sample b sits at starts[b] + (e - first event of b)
    first = np.zeros(n_batch, dtype=np.int64)
    if n_batch:
        np.cumsum(lens[:-1], out=first[1:])
    sample_of = np.repeat(np.arange(n_batch, dtype=np.int64), lens)
    src = np.repeat(starts - first, lens) + np.arange(int(lens.sum()), dtype=np.int64)
    times, channels = sp.times[src], sp.channels[src]
    keep = times >= t_start
    if t_stop is not None:
        keep &= times < t_stop
    cropped = np.bincount(sample_of[~keep], minlength=n_batch)
    if not keep.all():
        times, channels, sample_of = times[keep], channels[keep], sample_of[keep]
    if t_start != 0 or time_scale != 1:
        times = (times - times.dtype.type(t_start)) * times.dtype.type(time_scale)
    np_dtype = None if dtype is None else (np.float64 if dtype == torch.float64 else np.float32)
    out, counts, dropped = batch_events(times, channels, sample_of, n_batch, dataset.n_channels,
                                        max_spikes=max_spikes, presorted=True,
                                        max_bytes=max_bytes, dtype=np_dtype)
    shape = tuple(dataset.channel_shape) if maps else (dataset.n_channels,)
    t = torch.from_numpy(out.reshape(n_batch, *shape, out.shape[-1]))
    c = torch.from_numpy(counts.reshape(n_batch, *shape))
    labels = torch.from_numpy(sp.labels[idx])
    if device is not None:
        t, c, labels = t.to(device), c.to(device), labels.to(device)
    return EventBatch(SpikeTrains(t, c), labels, torch.from_numpy(dropped),
                      torch.from_numpy(cropped))


def iterate_batches(dataset: EventDataset, split: str, batch_size: int, *,
                    shuffle: bool = False, seed: int = 0, **settings) -> Iterator[EventBatch]:
    """Yield :class:`EventBatch` es over a whole split, ``batch_size`` samples each (the last
    one shorter), in order or shuffled by ``seed``. ``settings`` are those of
    :func:`batch_spike_trains`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    n = len(dataset[split])
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    for a in range(0, n, batch_size):
        yield batch_spike_trains(dataset, split, order[a:a + batch_size], **settings)


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
    return {"min": values.min().item(), "mean": float(values.mean()),
            "median": float(np.median(values)), "max": values.max().item()}


def info(dataset: EventDataset) -> dict:
    """What a dataset holds, per split: samples, samples per class, duration (last event
    time per sample, seconds) and spike counts (per sample, and the largest per channel,
    which sets the slot count of a batch). Plain values, ready for JSON."""
    out = {"name": dataset.name, "classes": dataset.n_classes,
           "channels": dataset.n_channels, "channel_shape": list(dataset.channel_shape),
           "notes": dataset.notes, "splits": {}}
    for name, sp in dataset.splits.items():
        counts = sp.spike_counts()
        nonempty = counts > 0
        last = np.zeros(len(sp), dtype=np.float64)
        if sp.times.size:
            # the last time of a sample is the maximum over its events (sorted by channel)
            last[nonempty] = np.maximum.reduceat(sp.times, sp.offsets[:-1][nonempty])
        group = np.repeat(np.arange(len(sp), dtype=np.int64), counts) * dataset.n_channels \
            + sp.channels
        per_channel = np.bincount(group) if group.size else np.zeros(1, np.int64)
        out["splits"][name] = {
            "samples": len(sp),
            "per_class": np.bincount(sp.labels, minlength=dataset.n_classes).tolist(),
            "spikes_per_sample": _stats(counts),
            "duration_s": _stats(last),
            "max_spikes_per_channel": int(per_channel.max()),
            "time_dtype": str(sp.times.dtype),
            "source": sp.source,
        }
    return out


def format_info(summary: dict) -> str:
    """:func:`info`'s summary as text lines, one block per split (names and sources shown
    through :func:`~batsnn.fileio.printable`)."""
    lines = [f"{printable(summary['name'])}: {summary['classes']} classes, "
             f"{summary['channels']} channels {tuple(summary['channel_shape'])}"]
    if summary.get("notes"):
        lines.append(f"  {printable(summary['notes'])}")
    for name, s in summary["splits"].items():
        sp, du = s["spikes_per_sample"], s["duration_s"]
        lines += [f"  {name}: {s['samples']} samples from {printable(s['source'])}",
                  f"    per class: {s['per_class']}",
                  f"    spikes per sample: min {sp['min']}, mean {sp['mean']:.1f}, median "
                  f"{sp['median']:.1f}, max {sp['max']}; most in one channel: "
                  f"{s['max_spikes_per_channel']}",
                  f"    duration (last spike, s): min {du['min']:.4g}, mean {du['mean']:.4g}, "
                  f"max {du['max']:.4g}; times {s['time_dtype']}"]
    return "\n".join(lines)
