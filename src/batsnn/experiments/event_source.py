"""Event streams as a run's data: :class:`EventSource`, the data source
(:mod:`batsnn.experiments.sources`) of the event datasets of
:mod:`batsnn.experiments.datasets` (SHD, SSC, N-MNIST read from their files; Yin-Yang and
Randman generated), and :data:`EVENT_KIND`, its registration.

Each split a run uses is built once, when the source is opened, as one dense tensor
``(N, channels, S)`` of spike times (:func:`dense_split`): ascending per channel, ``+inf``
padded, ``S`` the largest number of spikes of one channel of one sample in that split, capped
by the setting ``input_max_spikes`` (spikes beyond the cap are dropped and counted, and the
run says so in its log and in ``config.json``). Its size is known before anything is
allocated, and a split that cannot fit is refused in one line naming the sizes
(:class:`InputTooLarge`). A batch is then an index into that tensor, moved later by the
time-step mode's shifts and put on the grid with torch operations alone, on tensors of
fixed shape: on a GPU the training split is held there (:meth:`EventSource.keep_on`) and a
CUDA graph can record the whole step, input included.

The settings that shape the input (:class:`~batsnn.experiments.config.TrainConfig`):
``dataset_options`` (the generator's or reader's options, e.g. Randman's ``n_channels``),
``input_t_start``/``input_t_stop`` (events kept: ``t_start <= t < t_stop``, seconds of the
dataset's time), ``input_time_scale`` (kept times become ``(t - t_start) * scale``),
``input_max_spikes`` (the slot cap) and ``input_dtype`` (the precision the times are held
in: ``float32``, or ``float64`` where the dataset's times are float64).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from batsnn.experiments.datasets import (EVENT_DATASETS, EventDataset, batch_spike_trains,
                                         event_dataset_name, load_event_dataset, randman,
                                         yin_yang)
from batsnn.experiments.datasets.events import check_batch_settings, machine_memory
from batsnn.experiments.datasets.heidelberg import HEIDELBERG
from batsnn.experiments.datasource import (DataKind, DataSource, InputTooLarge,
                                          shifted_on_grid)
from batsnn.experiments.model import LAYER_TYPES, check_fits, device_memory
from batsnn.fileio import one_line, printable
from batsnn.spikes import mark_valid

__all__ = ["EVENT_CLASSES", "EVENT_KIND", "EVENT_SETTINGS", "DenseSplit", "EventSource",
           "InputTooLarge", "dense_split", "event_input_shape", "open_events"]

#: classes of each event dataset (``None``: set by its ``n_classes`` option, Randman's)
EVENT_CLASSES = {"shd": HEIDELBERG["shd"][0], "ssc": HEIDELBERG["ssc"][0], "nmnist": 10,
                 "yin-yang": 3, "randman": None}

#: the settings only event datasets read
EVENT_SETTINGS = ("input_max_spikes", "input_t_start", "input_t_stop", "input_time_scale",
                  "input_dtype")

_GENERATORS = {"yin-yang": yin_yang, "randman": randman}
_FILE_OPTIONS = {"shd": ("max_events",), "ssc": ("max_events",), "nmnist": ()}


#: working memory per event while a split is made dense (its sort keys, ranks and indices)
EVENT_WORK_BYTES = 128


def split_memory_limit() -> int | None:
    """The memory the dense splits of one run may take together: half this machine's
    (``None`` where unknown)."""
    memory = machine_memory()
    return memory // 2 if memory else None


def _option_names(dataset: str) -> tuple[str, ...]:
    gen = _GENERATORS.get(dataset)
    if gen is None:
        return _FILE_OPTIONS[dataset]
    return tuple(inspect.signature(gen).parameters)


def _check_options(dataset: str, options: Mapping) -> dict:
    """``dataset_options`` for ``dataset``: only its generator's (or reader's) options;
    Randman's ``n_classes`` checked here (the network's size depends on it)."""
    allowed = _option_names(dataset)
    unknown = sorted(printable(str(k)) for k in options if k not in allowed)
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
        raise ValueError(f"dataset_options: {dataset} {takes}; got {', '.join(unknown)}")
    if "n_classes" in options:
        v = options["n_classes"]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 10**6:
            raise ValueError(f"dataset_options: n_classes must be an integer in [1, 1000000], "
                             f"got {printable(repr(v))}")
    return dict(options)


def _n_classes(dataset: str, options: Mapping) -> int:
    n = EVENT_CLASSES[dataset]
    if n is None:
        default = inspect.signature(_GENERATORS[dataset]).parameters["n_classes"].default
        n = int(options.get("n_classes", default))
    return n


class DenseSplit(NamedTuple):
    """The first samples of one split as dense spike trains.

    Attributes:
        times: ``(N, channels, S)`` spike times, ascending per channel, ``+inf`` padded.
        labels: ``(N,)`` int64.
        spikes: the spikes kept.
        dropped: the spikes beyond the cap ``S`` (left out, counted).
        cropped: the events outside ``[t_start, t_stop)`` (left out, counted).
        largest: the largest number of spikes of one channel of one sample, before the cap.
        latest: the latest spike time kept (seconds, as held in ``times``; 0 without any).
    """

    times: torch.Tensor
    labels: torch.Tensor
    spikes: int
    dropped: int
    cropped: int
    largest: int
    latest: float


def dense_split(dataset: EventDataset, split: str, samples: int | None = None, *,
                max_spikes: int | None = None, t_start: float = 0.0,
                t_stop: float | None = None, time_scale: float = 1.0,
                dtype: torch.dtype = torch.float32,
                max_bytes: int | None = None) -> DenseSplit:
    """The first ``samples`` samples (``None``: all) of ``split`` of ``dataset`` as one dense
    tensor ``(N, channels, S)`` (:func:`~batsnn.experiments.datasets.batch_spike_trains` of
    them all, in ``dtype``), with ``S`` the largest per-channel spike count of those samples
    after cropping to ``[t_start, t_stop)``, capped at ``max_spikes``.

    The size is found from the event counts before anything is allocated.

    Raises:
        ValueError: more samples than the split holds; a bad cropping or scaling setting.
        InputTooLarge: the tensor would exceed ``max_bytes`` (default: half this machine's
            memory); the message names the sizes and the settings that shrink it.
    """
    check_batch_settings(max_spikes, t_start, t_stop, time_scale, max_bytes)
    sp = dataset[split]
    n = len(sp) if samples is None else samples
    if not 1 <= n <= len(sp):
        raise ValueError(f"{split}_samples must be in [1, {len(sp)}] for {dataset.name}, got "
                         f"{n}")
    end = int(sp.offsets[n])
    times = sp.times[:end]
    keep = times >= t_start
    if t_stop is not None:
        keep &= times < t_stop
    sample_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(sp.offsets[:n + 1]))
    group = sample_of[keep] * dataset.n_channels + sp.channels[:end][keep]
    largest = 0
    if group.size:  # events are in (sample, channel, time) order: groups are runs
        bounds = np.flatnonzero(group[1:] != group[:-1]) + 1
        largest = int(np.diff(np.concatenate(([0], bounds, [group.size]))).max())
    if not group.size:
        raise ValueError(f"no input spike of the {split} split of {dataset.name} (its first {n} "
                         f"samples) lies in [input_t_start, input_t_stop) = [{t_start!r}, "
                         f"{t_stop!r}): widen that window")
    top = (float(times[keep].max()) - t_start) * time_scale
    if not top <= torch.finfo(dtype).max:
        raise ValueError(f"input_time_scale {time_scale!r}: the {split} split's latest kept "
                         f"event becomes {top:g} s, beyond {dtype} (at most "
                         f"{torch.finfo(dtype).max:g})")
    slots = max(1, largest if max_spikes is None else min(max_spikes, largest))
    item = torch.empty((), dtype=dtype).element_size()
    need = n * dataset.n_channels * slots * item
    # the event arrays of the batching (keys, ranks, indices: measured at about 110 bytes per
    # event) live beside the result while it is built
    work = end * EVENT_WORK_BYTES
    limit = split_memory_limit() if max_bytes is None else max_bytes
    if limit is not None and need + work > limit:
        raise InputTooLarge(
            f"the {split} split of {dataset.name} as spike trains, {n} samples x "
            f"{dataset.n_channels} channels x {slots} spike slots of {dtype} "
            f"({need / 2**20:.1f} MiB) built from {end:,} events ({work / 2**20:.1f} MiB "
            f"while it is built), needs more than the {limit / 2**20:.1f} MiB allowed: lower "
            f"input_max_spikes, {split}_samples or input_t_stop")
    b = batch_spike_trains(dataset, split, np.arange(n), max_spikes=slots, t_start=t_start,
                           t_stop=t_stop, time_scale=time_scale, dtype=dtype,
                           max_bytes=max(need, 1))
    times, counts = b.trains.times, b.trains.counts
    # each channel's last kept spike (ascending, +inf padded): at slot count - 1
    last = times.gather(-1, (counts - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    latest = float(last[counts > 0].max()) if bool((counts > 0).any()) else 0.0
    return DenseSplit(times, b.labels, int(counts.sum()), int(b.dropped.sum()),
                      int(b.cropped.sum()), largest, latest)


def event_input_shape(network, dataset: EventDataset) -> tuple[int, ...]:
    """The input shape a network takes for ``dataset``: its channel maps (N-MNIST's
    ``(2, 34, 34)``) when the first layer reads maps (``conv2d``, ``pool2d``), else flat
    ``(channels,)``. ``ValueError`` for a map-reading network on a dataset without maps."""
    first = network[0]["type"]
    if not LAYER_TYPES[first].maps:
        return (dataset.n_channels,)
    if len(dataset.channel_shape) != 3:
        raise ValueError(f"a network starting with {printable(first)} takes maps (channels, "
                         f"height, width), but {dataset.name} has "
                         f"{tuple(dataset.channel_shape)} channels: start it with a linear "
                         "layer")
    return tuple(int(v) for v in dataset.channel_shape)


class EventSource(DataSource):
    """An event dataset as a run's data (see the module docstring): ``train`` and ``test``
    splits, each built once as dense spike trains (:func:`dense_split`).

    Args:
        dataset: the event dataset.
        cfg: the run's settings (:class:`~batsnn.experiments.config.TrainConfig`): the
            network (input shape), ``train_samples``/``test_samples``, the ``input_*``
            settings.
        origin: where the data comes from (recorded in ``config.json``).
        max_bytes: the largest dense split allowed (default: half this machine's memory).
    """

    def __init__(self, dataset: EventDataset, cfg: Any, origin: str,
                 max_bytes: int | None = None):
        self.dataset, self.cfg, self.origin = dataset, cfg, origin
        self.n_classes = dataset.n_classes
        self.n_inputs = dataset.n_channels
        self.input_shape = event_input_shape(cfg.network, dataset)
        self.dense: dict[str, DenseSplit] = {}
        self._times: dict[str, torch.Tensor] = {}
        self._labels: dict[str, torch.Tensor] = {}
        left = split_memory_limit() if max_bytes is None else max_bytes  # both splits together
        for split, n in (("train", cfg.train_samples), ("test", cfg.test_samples)):
            keep64 = cfg.input_dtype == "float64" and dataset[split].times.dtype == np.float64
            d = dense_split(dataset, split, n, max_spikes=cfg.input_max_spikes,
                            t_start=cfg.input_t_start, t_stop=cfg.input_t_stop,
                            time_scale=cfg.input_time_scale,
                            dtype=torch.float64 if keep64 else torch.float32,
                            max_bytes=left)
            if left is not None:
                left -= d.times.numel() * d.times.element_size()
            self.dense[split] = d
            self._times[split], self._labels[split] = d.times, d.labels
        self._check_time_range()

    def _check_time_range(self) -> None:
        """The latest input time must lie within the range batsnn supports for the network's
        smallest ``tau_s`` (:attr:`batsnn.params.LIFParams.max_time`), named by setting."""
        from batsnn.params import TIME_RATIO_MAX

        taus = [float(layer["tau_s"]) for layer in self.cfg.network if "tau_s" in layer]
        tau = min([float(self.cfg.tau_s), *taus])
        for split, d in self.dense.items():
            top = d.latest
            if top > TIME_RATIO_MAX * tau:
                raise ValueError(
                    f"input_time_scale {self.cfg.input_time_scale!r}: the {split} split's "
                    f"latest input time is {top:g} s, beyond {TIME_RATIO_MAX:g} * tau_s = "
                    f"{TIME_RATIO_MAX * tau:g} s, the range batsnn supports (docs/model.md "
                    "section 7)")

    @property
    def slots(self) -> int:
        """The spike slots per input channel (the largest of the splits')."""
        return max(int(t.shape[-1]) for t in self._times.values())

    def size(self, split):
        """Number of samples in ``split``."""
        return int(self._labels[split].shape[0])

    def inputs(self, split, idx, device, *, dt, shift=None, draw=None):
        """The samples ``idx`` of ``split`` as float32 spike times ``(B, *input_shape, S)``
        on ``device``. Exact time (``dt`` unset): the held times rounded once to float32.
        On a grid, as images (:func:`batsnn.experiments.sources.encode_images`): in float64
        each sample's times are moved later by its ``shift``, put on the grid
        (:func:`batsnn.encoding.discretize`) and rounded once to float32. ``+inf`` padding
        stays; the result is marked valid. Event streams take no augmentation: ``draw``
        must be ``None``."""
        if draw is not None:
            raise ValueError("event streams take no augmentation draw (augment 'none')")
        t = self._times[split][idx].to(device, non_blocking=True)
        t = shifted_on_grid(t, dt, shift) if dt else t.to(torch.float32)
        return mark_valid(t.reshape(t.shape[0], *self.input_shape, t.shape[-1]))

    def labels(self, split, idx, device=None):
        """The labels of the samples ``idx`` of ``split``."""
        y = self._labels[split][idx]
        return y if device is None else y.to(device)

    def check_fits(self, device, batch_size):
        """The network's estimate (:func:`batsnn.experiments.model.check_fits`) with
        :attr:`slots` input spikes per channel; on a GPU also the training split held there
        (:meth:`keep_on`: at most half the GPU's memory, else :class:`InputTooLarge`)."""
        check_fits(self.cfg, self.n_inputs, self.n_classes, device, batch_size,
                   input_shape=self.input_shape, input_slots=self.slots)
        device = torch.device(device)
        if device.type == "cuda":
            t = self._times["train"]
            need, have = t.numel() * t.element_size(), device_memory(device)
            if have is not None and need > have // 2:
                raise InputTooLarge(
                    f"the training split as spike trains, {' x '.join(map(str, t.shape))} "
                    f"(samples x channels x spike slots) of {t.dtype}, needs "
                    f"{need / 2**30:.2f} GiB, more than half of {device}'s "
                    f"{have / 2**30:.1f} GiB: lower input_max_spikes, train_samples or "
                    "input_t_stop")

    def keep_on(self, device):
        """Move the training split's spike times and labels to ``device``."""
        self._times["train"] = self._times["train"].to(device)
        self._labels["train"] = self._labels["train"].to(device)

    def facts(self):
        """Per split: samples, channels, spike slots, the spikes kept, dropped (beyond
        ``input_max_spikes``) and cropped (outside ``[input_t_start, input_t_stop)``), the
        largest per-channel count before the cap and the precision held."""
        return {split: {"samples": self.size(split), "channels": self.n_inputs,
                        "slots": int(d.times.shape[-1]), "spikes": d.spikes,
                        "dropped": d.dropped, "cropped": d.cropped,
                        "largest_per_channel": d.largest, "dtype": str(d.times.dtype)}
                for split, d in self.dense.items()}

    def notice(self) -> str | None:
        """One line when input events were left out: spikes dropped by ``input_max_spikes``,
        events cropped by ``input_t_start``/``input_t_stop`` (else ``None``)."""
        lines = []
        dropped = {s: d for s, d in self.dense.items() if d.dropped}
        if dropped:
            parts = [f"{s} {d.dropped:,} of {d.dropped + d.spikes:,} "
                     f"({100 * d.dropped / (d.dropped + d.spikes):.2f}%, largest count "
                     f"{d.largest})" for s, d in dropped.items()]
            lines.append(f"input_max_spikes {self.cfg.input_max_spikes}: input spikes beyond "
                         f"{self.cfg.input_max_spikes} per channel are dropped: "
                         + "; ".join(parts))
        cropped = {s: d for s, d in self.dense.items() if d.cropped}
        if cropped:
            total = {s: d.cropped + d.dropped + d.spikes for s, d in cropped.items()}
            parts = [f"{s} {d.cropped:,} of {total[s]:,} ({100 * d.cropped / total[s]:.2f}%)"
                     for s, d in cropped.items()]
            lines.append(f"input events outside [input_t_start, input_t_stop) = "
                         f"[{self.cfg.input_t_start!r}, {self.cfg.input_t_stop!r}) are left "
                         "out: " + "; ".join(parts))
        return "; ".join(lines) or None


def open_events(cfg: Any) -> EventSource:
    """The event source of a run's settings: ``cfg.dataset`` read from ``cfg.data_dir`` or
    generated with ``cfg.dataset_options``.

    Raises:
        ValueError: no ``data_dir`` for a dataset of files, a bad option value (naming
            ``dataset_options``), a bad file, more samples asked for than a split holds.
        FileNotFoundError: a file is missing (the message says where it is published).
        InputTooLarge: a split as spike trains cannot fit in memory.
    """
    name = event_dataset_name(cfg.dataset)
    options = dict(cfg.dataset_options)
    try:
        ds = load_event_dataset(name, cfg.data_dir, **options)
    except TypeError as e:
        raise ValueError(f"dataset_options: {printable(one_line(e))}") from None
    except ValueError as e:  # a generator's message names the option
        if name not in _GENERATORS:
            raise
        raise ValueError(f"dataset_options: {printable(one_line(e))}") from None
    origin = ds.notes if name in _GENERATORS else str(cfg.data_dir)
    return EventSource(ds, cfg, origin)


#: event streams (:class:`EventSource`)
EVENT_KIND = DataKind("events", event_dataset_name, EVENT_DATASETS, _n_classes,
                      _check_options, EVENT_SETTINGS, open_events)
