"""Event-stream and generated datasets: samples as ``(time, channel)`` events, batches as
batsnn spike trains.

- :mod:`~batsnn.experiments.datasets.events`: the split and dataset records, the vectorised
  batching into ``(batch, channels, max_spikes)`` spike trains, :func:`info`.
- :mod:`~batsnn.experiments.datasets.heidelberg`: SHD and SSC from their HDF5 files, and a
  writer of that layout (``h5py``: ``pip install "batsnn[events]"``).
- :mod:`~batsnn.experiments.datasets.nmnist`: N-MNIST from its binary event files.
- :mod:`~batsnn.experiments.datasets.tonic_adapter`: tonic dataset objects.
- :mod:`~batsnn.experiments.datasets.generated`: Yin-Yang and Randman (no files).

:func:`load_event_dataset` gives any of them by name. A training loop needs only::

    ds = load_event_dataset("shd", data_dir)          # or "yin-yang", "randman", ...
    for batch in iterate_batches(ds, "train", 256, shuffle=True, seed=epoch,
                                 max_spikes=None, t_stop=1.0):
        out = net(batch.trains.times)                 # (B, 700, S), +inf padded
        ...                                           # batch.labels; report batch.dropped

and ``info(ds)`` / ``format_info(info(ds))`` describe a dataset.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict

from batsnn.experiments.datasets.events import (BatchTooLarge, EventBatch, EventDataset,
                                                EventSplit, batch_spike_trains, format_info,
                                                info, iterate_batches)
from batsnn.experiments.datasets.generated import randman, yin_yang
from batsnn.experiments.datasets.heidelberg import load_heidelberg
from batsnn.experiments.datasets.nmnist import load_nmnist
from batsnn.experiments.datasets.tonic_adapter import from_tonic
from batsnn.fileio import printable

__all__ = ["EVENT_DATASETS", "BatchTooLarge", "EventBatch", "EventDataset", "EventSplit",
           "batch_spike_trains", "event_dataset_name", "format_info", "from_tonic", "info",
           "iterate_batches", "load_event_dataset", "randman", "yin_yang"]

#: names accepted by :func:`load_event_dataset`; the last two need no files
EVENT_DATASETS = ("shd", "ssc", "nmnist", "yin-yang", "randman")
_ALIASES = {"yinyang": "yin-yang", "n-mnist": "nmnist"}


def event_dataset_name(name: str) -> str | None:
    """The canonical name (one of :data:`EVENT_DATASETS`) of an event dataset's name,
    case and ``_``/``-`` ignored, aliases ``yinyang`` and ``n-mnist`` included; ``None``
    when ``name`` is none of them."""
    key = str(name).lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    return key if key in EVENT_DATASETS else None


def load_event_dataset(name: str, data_dir: str | os.PathLike | None = None,
                       **options) -> EventDataset:
    """The event dataset ``name`` (one of :data:`EVENT_DATASETS`): SHD, SSC and N-MNIST read
    from ``data_dir``; Yin-Yang and Randman generated (``options`` go to :func:`yin_yang` or
    :func:`randman`; for the file datasets, ``max_events`` to the SHD/SSC reader).

    Raises:
        ValueError: an unknown name, or no ``data_dir`` for a dataset that needs files.
        FileNotFoundError: a file is missing (the message says where it is published).
    """
    key = event_dataset_name(name)
    if key in ("yin-yang", "randman"):
        return _generated(key, options)
    if key is None:
        raise ValueError(f"unknown event dataset {printable(name)!r}; choose from "
                         f"{', '.join(EVENT_DATASETS)}")
    if data_dir is None:
        raise ValueError(f"{key} is read from its published files: pass --data-dir DIR")
    if key == "nmnist":
        if options:
            raise TypeError(f"nmnist takes no options, got {', '.join(options)}")
        return load_nmnist(data_dir)
    return load_heidelberg(key, data_dir, **options)


#: the last generated datasets of this process, by name and options (a sweep trains its runs
#: one after another in one process and would otherwise generate the same set for each run)
_GENERATED: OrderedDict = OrderedDict()
_GENERATED_KEEP = 2


def _generated(key: str, options: dict) -> EventDataset:
    """Yin-Yang or Randman with ``options``: generated once per process and options, each
    caller given its own copy (generation is deterministic, so a copy equals a new set)."""
    try:
        # the types too: True == 1 and 2.0 == 2, but the generator refuses the bool and float
        cache_key = (key, tuple(sorted((k, type(v).__name__, v) for k, v in options.items())))
        hash(cache_key)
    except TypeError:  # unhashable option values: the generator names the bad one
        cache_key = None
    if cache_key is None or cache_key not in _GENERATED:
        ds = (yin_yang if key == "yin-yang" else randman)(**options)
        if cache_key is None:
            return ds
        _GENERATED[cache_key] = ds
        while len(_GENERATED) > _GENERATED_KEEP:
            _GENERATED.popitem(last=False)
    _GENERATED.move_to_end(cache_key)
    return copy.deepcopy(_GENERATED[cache_key])
