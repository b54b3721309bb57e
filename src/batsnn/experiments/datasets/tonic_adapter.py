"""An adapter from ``tonic`` datasets (https://tonic.readthedocs.io) of event kinds.

A tonic dataset object (``tonic.datasets.SHD``, ``SSC``, ``NMNIST``, ...) has
``sensor_size = (W, H, P)``, a structured numpy ``dtype`` with fields among ``t``, ``x``,
``y``, ``p`` (times in microseconds), ``len()``, and items ``(events, target)``. Nothing
here imports tonic: any object of that structure is accepted, so tonic is needed only to
make the objects.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from batsnn.experiments.datasets.events import EventDataset, split_from_samples
from batsnn.fileio import printable

__all__ = ["from_tonic"]


def _sensor(obj, what: str) -> tuple[int, int, int]:
    size = getattr(obj, "sensor_size", None)
    try:
        w, h, p = (operator.index(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"{what} is not a tonic event dataset: its sensor_size is "
                        f"{printable(repr(size))}, expected (width, height, polarities)") \
            from None
    if min(w, h, p) < 1:
        raise ValueError(f"{what}: sensor_size {(w, h, p)} must be positive")
    return w, h, p


def _events_of(obj, i: int, what: str, sensor) -> tuple[np.ndarray, np.ndarray, int]:
    item = obj[i]
    try:
        events, target = item
    except (TypeError, ValueError):
        raise TypeError(f"{what}[{i}] is not an (events, target) pair") from None
    names = getattr(getattr(events, "dtype", None), "names", None)
    if not names or "t" not in names or "x" not in names:
        raise TypeError(f"{what}[{i}]: events must be a structured array with fields t and "
                        f"x (and y, p), got {printable(repr(getattr(events, 'dtype', events)))}")
    try:
        label = operator.index(target)
    except TypeError:
        raise TypeError(f"{what}[{i}]: the target must be an integer class, got "
                        f"{printable(repr(target))}") from None
    w, h, p = sensor
    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64) if "y" in names else np.zeros_like(x)
    pol = np.asarray(events["p"], dtype=np.int64) if "p" in names else np.zeros_like(x)
    for field, v, n in (("x", x, w), ("y", y, h), ("p", pol, p)):
        bad = np.flatnonzero((v < 0) | (v >= n))
        if bad.size:
            raise ValueError(f"{what}[{i}]: {field}={int(v[bad[0]])} is outside the sensor "
                             f"({n})")
    t = np.asarray(events["t"])
    if not np.issubdtype(t.dtype, np.number):
        raise TypeError(f"{what}[{i}]: event times must be numbers, got {t.dtype}")
    return t, (pol * h + y) * w + x, label


def from_tonic(train, test, *, valid=None, name: str = "tonic", n_classes: int | None = None,
               time_unit: float = 1e-6) -> EventDataset:
    """An :class:`~batsnn.experiments.datasets.events.EventDataset` from tonic dataset
    objects (one per split).

    Args:
        train, test, valid: tonic datasets (``valid`` optional, e.g. SSC's).
        name: the dataset's name.
        n_classes: number of classes; default ``len(train.classes)`` when tonic gives the
            classes, else one more than the largest label.
        time_unit: seconds per unit of the events' ``t`` (tonic: microseconds, 1e-6).

    Channels are ``(p, y, x)`` row-major, with axes of size 1 left out: tonic's SHD
    (``sensor_size (700, 1, 1)``) gives ``(700,)``, NMNIST (``(34, 34, 2)``) gives
    ``(2, 34, 34)``. Times are float64 seconds.
    """
    if isinstance(time_unit, bool) or not isinstance(time_unit, (int, float)) \
            or not math.isfinite(time_unit) or time_unit <= 0:
        raise ValueError(f"time_unit must be a finite number > 0, got {time_unit!r}")
    parts = {"train": train, "test": test}
    if valid is not None:
        parts["valid"] = valid
    sensor = _sensor(train, "train")
    raw = {}
    for split, obj in parts.items():
        if _sensor(obj, split) != sensor:
            raise ValueError(f"{split} has sensor_size {_sensor(obj, split)} but train has "
                             f"{sensor}")
        samples = [_events_of(obj, i, split, sensor) for i in range(len(obj))]
        raw[split] = samples
    if n_classes is None:
        classes = getattr(train, "classes", None)
        n_classes = len(classes) if classes else 1 + max(
            s[2] for samples in raw.values() for s in samples)
    w, h, p = sensor
    splits = {}
    for split, samples in raw.items():
        times = [np.asarray(t, dtype=np.float64) * time_unit for t, _, _ in samples]
        splits[split] = split_from_samples(times, [c for _, c, _ in samples],
                                           [lab for _, _, lab in samples],
                                           n_channels=w * h * p, n_classes=n_classes,
                                           source=f"tonic {split} set")
    shape = tuple(n for n in (p, h, w) if n > 1) or (1,)
    return EventDataset(name, shape, n_classes, splits,
                        notes=f"from tonic objects, sensor_size {sensor}")
