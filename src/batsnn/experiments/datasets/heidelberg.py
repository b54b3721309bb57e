"""The Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC), from their HDF5
files; and a writer of files in the same layout.

The published layout (Cramer et al. 2020, "The Heidelberg Spiking Data Sets for the
Systematic Evaluation of Spiking Neural Networks", https://zenkelab.org/datasets/): one HDF5
file per split, ``shd_train.h5``, ``shd_test.h5``, ``ssc_train.h5``, ``ssc_valid.h5``,
``ssc_test.h5`` (published gzip-compressed as ``.h5.gz``), each holding

- ``spikes/times``: one variable-length float array per sample, spike times in seconds;
- ``spikes/units``: one variable-length integer array per sample, the channel (0-699) of
  each spike;
- ``labels``: one integer class per sample (SHD 20 classes, SSC 35);
- ``extra/...``: speaker and key information, not read.

SHD has 8,156 training and 2,264 test samples, SSC 75,466 / 9,981 / 20,382
(https://compneuro.net). ``h5py`` is needed (``pip install "batsnn[events]"``).
"""

from __future__ import annotations

import gzip
import io
import numbers
import os
import zlib
from pathlib import Path

import numpy as np

from batsnn.experiments.datasets.events import (EventDataset, check_split, machine_memory)
from batsnn.fileio import atomic_write, describe_path, one_line, printable

__all__ = ["HEIDELBERG", "H5PY_MISSING", "load_heidelberg", "read_heidelberg_file",
           "synthetic_shd_samples", "write_heidelberg_file", "write_synthetic_shd",
           "write_synthetic_ssc"]

#: name -> (classes, splits and their published file stems)
HEIDELBERG = {
    "shd": (20, {"train": "shd_train", "test": "shd_test"}),
    "ssc": (35, {"train": "ssc_train", "valid": "ssc_valid", "test": "ssc_test"}),
}
N_CHANNELS = 700
URL = "https://zenkelab.org/datasets/ (mirror https://compneuro.net/datasets/)"
H5PY_MISSING = 'reading or writing SHD/SSC files needs h5py: pip install "batsnn[events]"'

#: the most samples and events a file may declare (SSC train: 75,466 samples)
MAX_SAMPLES = 10_000_000
#: a .h5.gz is never inflated beyond this many times its compressed size (plus 64 MiB)
GZ_RATIO = 50


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(H5PY_MISSING) from None
    return h5py


def _gunzip_bounded(path: Path) -> io.BytesIO:
    """Inflate ``path`` into memory, refusing to go beyond ``GZ_RATIO`` times its size plus
    64 MiB, or half the machine's memory (a gzip bomb is stopped there, not inflated)."""
    limit = GZ_RATIO * path.stat().st_size + 64 * 2**20
    memory = machine_memory()
    if memory:
        limit = min(limit, memory // 2)
    buf = io.BytesIO()
    try:
        with gzip.open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > limit:
                    raise ValueError(f"{printable(path)} inflates to more than "
                                     f"{limit / 2**20:.0f} MiB ({GZ_RATIO}x its size); "
                                     f"refusing to read it (not an SHD/SSC file?)")
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{printable(path)} cannot be read as gzip "
                         f"({printable(one_line(e))})") from None
    buf.seek(0)
    return buf


def _kind(dtype, base) -> str:
    """A dataset's element type in words: ``variable-length float32`` or ``uint16``."""
    return f"variable-length {base}" if base is not None else str(dtype)


def _checked_datasets(f, name: str, h5py) -> tuple:
    """The datasets ``spikes/times``, ``spikes/units`` and ``labels`` of open HDF5 file
    ``f`` (shown as ``name``), their shapes and types checked, and the float type of the
    times: ``(times, units, labels, time_type)``."""
    ds = {}
    for key in ("spikes/times", "spikes/units", "labels"):
        obj = f.get(key)
        if not isinstance(obj, h5py.Dataset):
            have = ", ".join(printable(k, 40) for k in list(f.keys())[:10])
            raise ValueError(f"{name} has no dataset '{key}' (keys: {have or 'none'}); "
                             f"is it an SHD/SSC file?")
        ds[key] = obj
    times_ds, units_ds, labels_ds = ds["spikes/times"], ds["spikes/units"], ds["labels"]
    if labels_ds.ndim != 1:
        raise ValueError(f"{name}: 'labels' must be 1-D, got shape {labels_ds.shape}")
    n = labels_ds.shape[0]
    if n > MAX_SAMPLES:
        raise ValueError(f"{name} declares {n} samples, more than the {MAX_SAMPLES} "
                         f"batsnn reads")
    for key, d in (("spikes/times", times_ds), ("spikes/units", units_ds)):
        if d.shape != (n,):
            raise ValueError(f"{name}: '{key}' has shape {d.shape}, expected ({n},) "
                             f"like 'labels'")
    if not np.issubdtype(labels_ds.dtype, np.integer):
        raise ValueError(f"{name}: 'labels' must be integers, got {labels_ds.dtype}")
    t_base = h5py.check_vlen_dtype(times_ds.dtype)
    u_base = h5py.check_vlen_dtype(units_ds.dtype)
    if t_base is None or not np.issubdtype(t_base, np.floating):
        raise ValueError(f"{name}: 'spikes/times' must hold variable-length float "
                         f"arrays, got {_kind(times_ds.dtype, t_base)}")
    if u_base is None or not np.issubdtype(u_base, np.integer):
        raise ValueError(f"{name}: 'spikes/units' must hold variable-length integer "
                         f"arrays, got {_kind(units_ds.dtype, u_base)}")
    return times_ds, units_ds, labels_ds, t_base


def _read_events(times_ds, units_ds, name: str, max_events: int) -> tuple[list, list]:
    """Every sample's spike times and units, read 4096 samples at a time: each sample as
    many times as units, at most ``max_events`` events in all (checked chunk by chunk,
    before the next is read)."""
    times, units, total = [], [], 0
    for a in range(0, times_ds.shape[0], 4096):
        t_chunk, u_chunk = times_ds[a:a + 4096], units_ds[a:a + 4096]
        for i, (t, u) in enumerate(zip(t_chunk, u_chunk)):
            if len(t) != len(u):
                raise ValueError(f"{name}: sample {a + i} has {len(t)} times but "
                                 f"{len(u)} units")
            total += len(t)
        if total > max_events:
            raise ValueError(f"{name} holds more than {max_events} events, more than "
                             f"batsnn reads on this machine")
        times.extend(t_chunk)
        units.extend(u_chunk)
    return times, units


def read_heidelberg_file(path: str | os.PathLike, *, n_classes: int,
                         max_events: int | None = None):
    """Read one SHD/SSC HDF5 file (``.h5`` or ``.h5.gz``) into an
    :class:`~batsnn.experiments.datasets.events.EventSplit`.

    Checked, in order: the file is a regular file; gzip (bounded inflation); HDF5; the keys
    ``spikes/times``, ``spikes/units``, ``labels`` are datasets; their shapes (one entry per
    sample, at most ``MAX_SAMPLES``) and types (variable-length floats, variable-length
    integers, integers); then, chunk by chunk, the event counts (at most ``max_events`` in
    all, default: what half the machine's memory holds), and finally every value (times
    finite and >= 0, units in [0, 700), labels in [0, n_classes)).

    Raises:
        ValueError: one line naming the file and what is wrong.
        ImportError: h5py is not installed (the message names the extra to install).
    """
    h5py = _h5py()
    path = Path(path)
    name = printable(path)
    if not path.is_file():
        raise ValueError(f"{name} {describe_path(path)}, expected an SHD/SSC HDF5 file")
    source = _gunzip_bounded(path) if path.name.endswith(".gz") else str(path)
    if max_events is None:
        memory = machine_memory()
        max_events = (memory // 2) // 12 if memory else 2**40  # 8-byte time + 4-byte channel
    try:
        f = h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{name} cannot be read as HDF5 ({printable(one_line(e))})") from None
    try:
        with f:
            times_ds, units_ds, labels_ds, t_base = _checked_datasets(f, name, h5py)
            n = labels_ds.shape[0]
            labels = labels_ds[()]
            times, units = _read_events(times_ds, units_ds, name, max_events)
    except (OSError, KeyError, RuntimeError, TypeError) as e:
        raise ValueError(f"{name} is corrupt ({printable(one_line(e))})") from None
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(t) for t in times], out=offsets[1:])
    dtype = np.float64 if t_base == np.float64 else np.float32
    flat_t = np.concatenate(times).astype(dtype) if n else np.zeros(0, dtype)
    flat_u = np.concatenate(units).astype(np.int64) if n else np.zeros(0, np.int64)
    if n == 0:
        raise ValueError(f"{name} holds no samples")
    return check_split(flat_t, flat_u, offsets, labels, n_channels=N_CHANNELS,
                       n_classes=n_classes, source=str(path))


def _find(directory: Path, stem: str) -> Path | None:
    for suffix in (".h5", ".h5.gz"):
        p = directory / (stem + suffix)
        if os.path.lexists(p):
            return p
    return None


def load_heidelberg(name: str, data_dir: str | os.PathLike, *,
                    max_events: int | None = None) -> EventDataset:
    """Load SHD (``name="shd"``: train, test) or SSC (``"ssc"``: train, valid, test) from
    the published files in ``data_dir`` (``shd_train.h5`` or ``shd_train.h5.gz``, ...).

    Raises:
        FileNotFoundError: a file is missing; the message names the file looked for, where
            it is published and ``--data-dir``.
        ValueError: ``name`` is unknown, ``data_dir`` is not a directory, or a file is bad.
        ImportError: h5py is missing.
    """
    if name not in HEIDELBERG:
        raise ValueError(f"unknown Heidelberg dataset {printable(name)!r}; choose shd or ssc")
    n_classes, stems = HEIDELBERG[name]
    d = Path(data_dir)
    if not d.is_dir():
        raise ValueError(f"--data-dir {printable(d)} {describe_path(d)}, expected a directory "
                         f"holding {stems['train']}.h5")
    splits = {}
    for split, stem in stems.items():
        p = _find(d, stem)
        if p is None:
            raise FileNotFoundError(
                f"{printable(d / (stem + '.h5'))} (or .h5.gz) does not exist; {name.upper()} "
                f"is published at {URL}: put its files in a directory and pass --data-dir")
        splits[split] = read_heidelberg_file(p, n_classes=n_classes, max_events=max_events)
    return EventDataset(name, (N_CHANNELS,), n_classes, splits,
                        notes=f"{name.upper()} from {printable(d)}")


def write_heidelberg_file(path: str | os.PathLike, times, units, labels, *,
                          compress: bool | None = None) -> None:
    """Write samples in the published SHD/SSC layout (``spikes/times`` variable-length
    float, ``spikes/units`` variable-length uint16, ``labels`` uint16, ``extra/speaker``),
    atomically; gzip-compressed when the name ends in ``.gz`` (or ``compress``).

    Args:
        path: the file to write (``.h5``, or ``.h5.gz`` for a gzip-compressed file).
        times, units: N arrays each (times in seconds as float16/32/64, kept as given).
        labels: N integers.
        compress: gzip the file (``None``: when the name ends in ``.gz``).
    """
    h5py = _h5py()
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    n = len(labels)
    t_dtype = np.asarray(times[0]).dtype if n else np.dtype(np.float32)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(t_dtype))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t[i] = np.asarray(times[i], dtype=t_dtype)
            u[i] = np.asarray(units[i], dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(n, dtype=np.uint16))
    data = buf.getvalue()
    atomic_write(path, gzip.compress(data, mtime=0) if compress else data)


def synthetic_shd_samples(n_samples: int, *, seed: int = 0, n_classes: int = 20,
                          n_channels: int = N_CHANNELS, durations: tuple = (0.6, 1.1),
                          median_spikes: float = 5000.0, sigma: float = 0.5,
                          dtype=np.float32):
    """Random SHD-like samples: ``(times, units, labels)`` lists for
    :func:`write_heidelberg_file`.

    Each sample gets a class ``k`` (cycled, so classes are balanced), a duration uniform in
    ``durations`` seconds, a spike count drawn from a log-normal law with median
    ``median_spikes`` and shape ``sigma`` (clipped to [100, 30000]), spike times uniform
    over its duration and channels drawn from a class-specific band (a Gaussian of width
    ``n_channels / 8`` centred at ``(k + 0.5) / n_classes * n_channels``, wrapped around the
    channel range), so that classes differ and a network can learn them.

    The numbers and their sources: 700 channels and 20 classes (the published
    specification, https://compneuro.net); durations 0.6-1.1 s (the range SHD users report
    for the samples, e.g. the Nengo forum thread "Spiking Heidelberg Digits - Input Spike
    Trains"); "several thousand events per sample" (the description of the data this
    writer stands in for). The median 5,000 and shape 0.5 are assumptions chosen to match
    that description: the published per-sample spike-count statistics could not be
    consulted here, so the counts are not claimed to match them.
    """
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(median_spikes), sigma, n_samples), 100,
                     30000).astype(np.int64)
    labels = np.arange(n_samples) % n_classes
    times, units = [], []
    for i in range(n_samples):
        centre = (labels[i] + 0.5) / n_classes * n_channels
        ch = (np.rint(rng.normal(centre, n_channels / 8, counts[i])).astype(np.int64)
              % n_channels).astype(np.uint16)
        t = np.sort(rng.uniform(0.0, rng.uniform(*durations), counts[i])).astype(dtype)
        times.append(t)
        units.append(ch)
    return times, units, labels


def write_synthetic_shd(directory: str | os.PathLike, *, n_train: int = 8156,
                        n_test: int = 2264, seed: int = 0, compress: bool = False) -> list:
    """Write ``shd_train.h5`` and ``shd_test.h5`` (``.h5.gz`` with ``compress``) of
    :func:`synthetic_shd_samples` into ``directory`` (default sizes: SHD's 8,156 / 2,264),
    for tests and benchmarks of the SHD path without the published files. Returns the
    paths written."""
    return _write_synthetic(directory, (("shd_train", "n_train", n_train),
                                        ("shd_test", "n_test", n_test)), 20, seed, compress)


def write_synthetic_ssc(directory: str | os.PathLike, *, n_train: int = 8156,
                        n_valid: int = 2264, n_test: int = 2264, seed: int = 0,
                        compress: bool = False) -> list:
    """Write ``ssc_train.h5``, ``ssc_valid.h5`` and ``ssc_test.h5`` (``.h5.gz`` with
    ``compress``) of :func:`synthetic_shd_samples` with SSC's 35 classes into ``directory``,
    for tests and benchmarks of the SSC path without the published files. The default
    sizes are SHD's (8,156 training samples: an SHD-sized epoch), not SSC's 75,466 / 9,981
    / 20,382. Returns the paths written."""
    return _write_synthetic(directory, (("ssc_train", "n_train", n_train),
                                        ("ssc_valid", "n_valid", n_valid),
                                        ("ssc_test", "n_test", n_test)), 35, seed, compress)


def _write_synthetic(directory, splits, n_classes: int, seed: int, compress: bool) -> list:
    """One file per ``(stem, argument name, samples)`` of ``splits``, split ``k`` drawn with
    seed ``seed + k``."""
    for _, name, n in splits:  # everything checked before the first file is written
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{printable(d)} {describe_path(d)}, expected a directory")
    paths = []
    for k, (stem, _, n) in enumerate(splits):
        p = d / (stem + (".h5.gz" if compress else ".h5"))
        write_heidelberg_file(p, *synthetic_shd_samples(n, seed=seed + k, n_classes=n_classes))
        paths.append(p)
    return paths
