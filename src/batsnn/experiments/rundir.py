"""Run directories: their layout, atomic file writes, checkpoints and RNG states.

A run directory holds (names in :class:`RunDir`):

- ``config.json``: the resolved settings plus run facts (batsnn version, layer sizes,
  device, data source); it reads back as a config (:mod:`batsnn.experiments.config`).
- ``metrics.csv``: one row per completed epoch (columns named in :mod:`batsnn.metrics`).
- ``summary.json``: the last row, the best test accuracy and the epochs completed.
- ``last.pt`` / ``best.pt``: checkpoints (model, optimizer, scheduler, epoch, RNG states,
  metric history, settings).
- PNG plots.

Every file is replaced atomically (written to ``NAME.tmp``, flushed, renamed), so a reader
or an interrupted run never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from batsnn.metrics import EPOCHS_COMPLETED

__all__ = ["RunDir", "RunExists", "atomic_write", "load_checkpoint", "read_csv", "read_json",
           "rng_state", "save_checkpoint", "set_rng_state", "write_csv", "write_json"]


class RunExists(RuntimeError):
    """The output directory already holds a run and ``resume`` was not asked for."""


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (NaN and infinities as Python's json module
    writes them: ``NaN``, ``Infinity``)."""
    text = json.dumps(obj, indent=2, default=_json_default)
    atomic_write(path, (text + "\n").encode())


def read_json(path: str | os.PathLike):
    """The JSON value in ``path``."""
    return json.loads(Path(path).read_text())


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write dict rows as CSV (header: the first row's keys), atomically; no rows: empty file."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def read_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, loaded on the CPU (tensors are moved
    to the model's device by ``load_state_dict``; RNG states must stay CPU tensors). It is a
    full pickle: load only checkpoints you trust."""
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """The states of every RNG a run uses: torch (CPU and every GPU), numpy, Python."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    """Restore RNG states saved by :func:`rng_state` (GPU states only where CUDA is present)."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (paths only; nothing is created on construction)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    CONFIG = "config.json"
    METRICS = "metrics.csv"
    SUMMARY = "summary.json"
    LAST = "last.pt"
    BEST = "best.pt"
    PLOTS = ("learning_curves.png", "spikes_per_layer.png", "raster.png")

    @property
    def config(self) -> Path:
        """``config.json``: settings and run facts."""
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        """``metrics.csv``: one row per completed epoch."""
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        """``summary.json``: the last row, best test accuracy, epochs done."""
        return self.path / self.SUMMARY

    @property
    def last(self) -> Path:
        """``last.pt``: the checkpoint after the last completed epoch."""
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        """``best.pt``: the checkpoint of the best test accuracy."""
        return self.path / self.BEST

    def file(self, name: str) -> Path:
        """Any other file of the run, e.g. ``run.file("raster.png")``."""
        return self.path / name

    def has_checkpoint(self) -> bool:
        """Whether a run was started here (``last.pt`` exists)."""
        return self.last.exists()

    def epochs_completed(self) -> int:
        """Epochs recorded in ``summary.json`` (0 when there is none or it is unreadable)."""
        try:
            return int(read_json(self.summary).get(EPOCHS_COMPLETED, 0))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    def is_finished(self, epochs: int) -> bool:
        """Whether at least ``epochs`` epochs are recorded."""
        return self.epochs_completed() >= epochs
