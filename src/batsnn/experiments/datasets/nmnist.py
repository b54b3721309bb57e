"""N-MNIST (Orchard et al. 2015, "Converting Static Image Datasets to Spiking Neuromorphic
Datasets Using Saccades"), from its published binary event files; and a writer of them.

Published layout (https://www.garrickorchard.com/datasets/n-mnist): folders ``Train`` and
``Test`` with one subfolder per digit (``Train/0/00002.bin``, ...), or their archives
``Train.zip`` and ``Test.zip``. Each file is a list of 40-bit events, 5 bytes each, most
significant first: bits 39-32 the x address, 31-24 the y address, bit 23 the polarity
(0 OFF, 1 ON), bits 22-0 the timestamp in microseconds. The sensor is 34 x 34 pixels.

Channels: flat ``polarity * 34 * 34 + y * 34 + x``, i.e. the maps ``(2, 34, 34)`` as
(polarity, y, x), for convolutional layers (``maps=True`` when batching). Times are
microseconds times 1e-6, float64.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from batsnn.experiments.datasets.events import EventDataset, check_split
from batsnn.fileio import atomic_write, describe_path, one_line, printable

__all__ = ["NMNIST_SHAPE", "decode_nmnist", "encode_nmnist", "load_nmnist",
           "read_nmnist_split", "write_nmnist_file"]

NMNIST_SHAPE = (2, 34, 34)
URL = "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data 10.17632/468j46mzdv.1)"
#: the largest single event file read (the published ones are a few tens of KiB)
MAX_FILE_BYTES = 16 * 2**20
#: the most files one split may hold (the published training split has 60,000)
MAX_FILES = 1_000_000
_ENTRY = re.compile(r"(?:^|/)([0-9])/[^/]+\.bin$")


def decode_nmnist(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the bytes of one N-MNIST file into ``(times, channels)``: times in seconds
    (float64), flat channels ``p * 1156 + y * 34 + x``. Raises ``ValueError`` naming ``name``
    when the size is not a multiple of 5 bytes or an address is outside 34 x 34."""
    if len(raw) % 5:
        raise ValueError(f"{printable(name)} is truncated or not an N-MNIST event file: "
                         f"{len(raw)} bytes is not a whole number of 5-byte events")
    ev = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    p = ev[:, 2] >> 7
    ts = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    bad = np.flatnonzero((x >= 34) | (y >= 34))
    if bad.size:
        e = int(bad[0])
        raise ValueError(f"{printable(name)}: event {e} has address x={int(x[e])}, "
                         f"y={int(y[e])}, outside the 34 x 34 sensor")
    return ts * 1e-6, p * 34 * 34 + y * 34 + x


def encode_nmnist(times_us, x, y, p) -> bytes:
    """The published 40-bit encoding of events (``times_us`` integer microseconds < 2**23,
    ``x, y`` in [0, 34), ``p`` 0 or 1)."""
    t = np.asarray(times_us, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= 2**23):
        raise ValueError("N-MNIST timestamps must be in [0, 2**23) microseconds")
    ev = np.empty((t.size, 5), dtype=np.uint8)
    ev[:, 0] = np.asarray(x)
    ev[:, 1] = np.asarray(y)
    ev[:, 2] = (np.asarray(p, dtype=np.int64) << 7) | (t >> 16)
    ev[:, 3] = (t >> 8) & 0xFF
    ev[:, 4] = t & 0xFF
    return ev.tobytes()


def _folder_entries(d: Path):
    """``(digit, path)`` of every ``<digit>/<name>.bin`` under ``d``, sorted."""
    out = []
    for digit in range(10):
        sub = d / str(digit)
        if not sub.is_dir():
            raise ValueError(f"{printable(sub)} {describe_path(sub)}, expected the folder of "
                             f"digit {digit}")
        for p in sorted(sub.iterdir()):
            if p.suffix == ".bin":
                if not p.is_file():
                    raise ValueError(f"{printable(p)} {describe_path(p)}, expected an N-MNIST "
                                     f"event file")
                out.append((digit, p))
                if len(out) > MAX_FILES:
                    raise ValueError(f"{printable(d)} holds more than {MAX_FILES} files")
    return out


def read_nmnist_split(path: str | os.PathLike):
    """Read one N-MNIST split from a folder (``Train``, ``Test``: one subfolder per digit) or
    a zip archive of it (``Train.zip``); returns an
    :class:`~batsnn.experiments.datasets.events.EventSplit`.

    Every file's size is checked before it is read (a whole number of 5-byte events, at
    most ``MAX_FILE_BYTES``; in a zip, the declared size, and the bytes inflated never
    exceed it), every address is in 34 x 34, and the label comes from the digit folder.

    Raises:
        ValueError: one line naming the file or archive entry and what is wrong.
    """
    path = Path(path)
    times, channels, labels = [], [], []
    if path.is_dir():
        for digit, p in _folder_entries(path):
            size = p.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(f"{printable(p)} is {size} bytes, more than the "
                                 f"{MAX_FILE_BYTES} of any N-MNIST file")
            t, c = decode_nmnist(p.read_bytes(), str(p))
            times.append(t)
            channels.append(c)
            labels.append(digit)
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as z:
                infos = [i for i in z.infolist() if not i.is_dir() and _ENTRY.search(i.filename)]
                if len(infos) > MAX_FILES:
                    raise ValueError(f"{printable(path)} holds more than {MAX_FILES} files")
                for info in sorted(infos, key=lambda i: i.filename):
                    entry = f"{path}:{info.filename}"
                    if info.file_size > MAX_FILE_BYTES:
                        raise ValueError(f"{printable(entry)} declares {info.file_size} bytes, "
                                         f"more than the {MAX_FILE_BYTES} of any N-MNIST file")
                    with z.open(info) as f:
                        raw = f.read(info.file_size + 1)
                    if len(raw) != info.file_size:
                        raise ValueError(f"{printable(entry)} holds {len(raw)} bytes but "
                                         f"declares {info.file_size}")
                    t, c = decode_nmnist(raw, entry)
                    times.append(t)
                    channels.append(c)
                    labels.append(int(_ENTRY.search(info.filename).group(1)))
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
            raise ValueError(f"{printable(path)} cannot be read as a zip archive "
                             f"({printable(one_line(e))})") from None
    else:
        raise ValueError(f"{printable(path)} {describe_path(path)}, expected an N-MNIST "
                         f"folder or zip archive")
    if not labels:
        raise ValueError(f"{printable(path)} holds no N-MNIST event files "
                         f"(<digit>/<name>.bin)")
    n = len(labels)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(t) for t in times], out=offsets[1:])
    return check_split(np.concatenate(times), np.concatenate(channels), offsets,
                       np.asarray(labels, dtype=np.int64), n_channels=2 * 34 * 34,
                       n_classes=10, source=str(path))


def load_nmnist(data_dir: str | os.PathLike) -> EventDataset:
    """Load N-MNIST (train, test) from ``data_dir`` holding the folders ``Train`` and
    ``Test`` or the archives ``Train.zip`` and ``Test.zip`` (a folder is preferred).

    Raises:
        FileNotFoundError: a split is missing; the message names what was looked for, where
            N-MNIST is published and ``--data-dir``.
        ValueError: ``data_dir`` is not a directory, or a file is bad.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise ValueError(f"--data-dir {printable(d)} {describe_path(d)}, expected a directory "
                         f"holding Train/ and Test/ (or Train.zip and Test.zip)")
    splits = {}
    for split, stem in (("train", "Train"), ("test", "Test")):
        folder, archive = d / stem, d / f"{stem}.zip"
        if os.path.lexists(folder):
            splits[split] = read_nmnist_split(folder)
        elif os.path.lexists(archive):
            splits[split] = read_nmnist_split(archive)
        else:
            raise FileNotFoundError(
                f"{printable(folder)} (or {stem}.zip) does not exist; N-MNIST is published at "
                f"{URL}: put Train and Test in a directory and pass --data-dir")
    return EventDataset("nmnist", NMNIST_SHAPE, 10, splits,
                        notes=f"N-MNIST from {printable(d)}; channels (polarity, y, x)")


def write_nmnist_file(path: str | os.PathLike, times_us, x, y, p) -> None:
    """Write one N-MNIST event file (atomically), in the published 40-bit encoding."""
    atomic_write(path, encode_nmnist(times_us, x, y, p))
