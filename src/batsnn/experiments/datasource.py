"""The data-source interface the training loop uses: where a run's samples come from.

A :class:`DataSource` hands out labelled samples as spike times, by split (``"train"``,
``"test"``) and sample index, without the loop knowing what they were: images encoded to
spike times (:class:`~batsnn.experiments.sources.ImageSource`, the datasets of
:mod:`batsnn.experiments.data`) or
event streams that already are spike times
(:class:`~batsnn.experiments.event_source.EventSource`). What the loop asks:

- sizes: ``n_train``, ``n_test``, ``n_classes``, ``n_inputs`` (input neurons per sample)
  and ``input_shape`` (those neurons as the network takes them, e.g. ``(784,)`` or
  ``(1, 28, 28)``); ``origin`` says where the data was read from (recorded in the run's
  ``config.json``);
- ``inputs(split, idx, device, dt=, shift=, draw=)``: spike times ``(B, *input_shape, S)``
  float32 on ``device`` on the grid ``dt``, each sample moved later by its ``shift`` (the
  time-step mode's, :mod:`batsnn.experiments.timestep`) and transformed by the
  training batch's ``draw``;
- ``labels(split, idx, device)``: ``(B,)`` int64;
- ``batch_draw(epoch, batch)``: the random transformation of one training batch (a CPU
  tensor, or ``None``): data augmentation, drawn from the run's seed, the epoch and the
  batch index only, so a resumed run sees the same;
- ``check_fits(device, batch_size)``: ``MemoryError`` before anything is allocated when
  the run's network and its input spikes cannot fit;
- ``keep_on(device)``: hold the training split where the steps run;
- ``facts()``: what the run records about its input in ``config.json`` (or ``None``), and
  ``notice()``: a line the run log shows once (or ``None``).

:class:`Split` is a view of some samples of one split (evaluation walks through it).

Each kind of data is a :class:`DataKind` (its dataset names, classes, options, the settings
only it reads, and how to open it), listed in :func:`batsnn.experiments.sources.data_kinds`;
:func:`~batsnn.experiments.sources.open_source` and the settings' checks
(:mod:`batsnn.experiments.config`) find a dataset's kind there.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from batsnn.encoding import discretize

__all__ = ["SPLITS", "DataKind", "DataSource", "InputTooLarge", "Split", "shifted_on_grid"]

#: the splits of a data source
SPLITS = ("train", "test")


def shifted_on_grid(times: torch.Tensor, dt: float,
                    shift: torch.Tensor | None = None) -> torch.Tensor:
    """Spike times ``(B, ..., S)`` in seconds, each sample's moved later by its ``shift``
    (``(B,)`` seconds; ``None``: not moved), put on the grid ``dt``
    (:func:`batsnn.encoding.discretize`) in float64 and rounded once to float32: the input
    rule of every data source on a grid, so that a time's cell is found from the exact sum."""
    t = times.to(torch.float64)
    if shift is not None:
        t = t + shift.to(device=t.device, dtype=torch.float64).reshape(
            -1, *([1] * (t.dim() - 1)))
    return discretize(t, dt).to(torch.float32)


class InputTooLarge(ValueError, MemoryError):
    """A data source's input (e.g. a split as dense spike trains) cannot fit in memory,
    found before anything is allocated; the message names the sizes and the settings that
    shrink it: a setting to change (``ValueError``) about memory (``MemoryError``)."""


class DataSource(abc.ABC):
    """Labelled samples as spike times (see the module docstring).

    Attributes:
        n_classes: number of classes (labels lie in ``[0, n_classes)``).
        n_inputs: input neurons per sample.
        input_shape: those neurons as the network takes them (without batch and spike axes).
        origin: where the data was read from (a directory, a file).
    """

    n_classes: int
    n_inputs: int
    input_shape: tuple[int, ...]
    origin: str

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return self.size("train")

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return self.size("test")

    @abc.abstractmethod
    def size(self, split: str) -> int:
        """Number of samples in ``split``."""

    @abc.abstractmethod
    def inputs(self, split: str, idx, device, *, dt: float | None,
               shift: torch.Tensor | None = None,
               draw: torch.Tensor | None = None) -> torch.Tensor:
        """Spike times ``(B, *input_shape, S)`` float32 on ``device`` of the samples ``idx``
        (an index tensor or a slice) of ``split``, on the grid ``dt`` (``None``: exact
        time), each moved later by ``shift`` ``(B,)`` seconds (or not, ``None``) and
        transformed by ``draw`` (:meth:`batch_draw`; ``None``: as they are)."""

    @abc.abstractmethod
    def labels(self, split: str, idx, device=None) -> torch.Tensor:
        """The labels ``(B,)`` int64 of the samples ``idx`` of ``split`` (on ``device``, or
        where they are held)."""

    def batch_draw(self, *, epoch: int, batch: int) -> torch.Tensor | None:
        """The random transformation of training batch ``batch`` of ``epoch`` (a CPU
        tensor, the same for the same seed, epoch and batch), or ``None`` (the default:
        samples are used as they are)."""
        return None

    @abc.abstractmethod
    def check_fits(self, device, batch_size: int) -> None:
        """Raise ``MemoryError`` naming the sizes when the run's network, its optimizer
        state and the spike buffers of ``batch_size`` samples cannot fit on ``device``."""

    def keep_on(self, device) -> None:
        """Hold the training split on ``device`` (the default: leave it where it is)."""

    def facts(self) -> dict | None:
        """What the run records about its input besides the settings (plain values, for
        ``config.json``), or ``None`` (the default: nothing)."""
        return None

    def notice(self) -> str | None:
        """A line the run log shows once when it starts, about something lost or changed in
        the input (e.g. spikes beyond a cap), or ``None`` (the default: nothing)."""
        return None

    def split(self, split: str, rows=None) -> "Split":
        """The samples ``rows`` (a slice or an index tensor; ``None``: all) of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        all_rows = torch.arange(self.size(split))
        return Split(self, split, all_rows if rows is None else all_rows[rows])


class Split:
    """Some samples of one split of a :class:`DataSource`; slicing gives a smaller view.

    Attributes:
        source, name, rows: the source, the split's name and the samples' indices ``(N,)``.
    """

    def __init__(self, source: DataSource, name: str, rows: torch.Tensor):
        self.source, self.name, self.rows = source, name, rows

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, rows) -> "Split":
        return Split(self.source, self.name, self.rows[rows])

    @property
    def labels(self) -> torch.Tensor:
        """The samples' labels ``(N,)`` int64."""
        return self.source.labels(self.name, self.rows)

    def inputs(self, device, dt: float | None) -> torch.Tensor:
        """The samples' spike times on the grid ``dt`` (:meth:`DataSource.inputs`)."""
        return self.source.inputs(self.name, self.rows, device, dt=dt)


class DataKind(NamedTuple):
    """A kind of data a run can train on.

    Attributes:
        name: e.g. ``"images"``, ``"events"``.
        canonical: ``name -> canonical dataset name``, or ``None`` when the name is not a
            dataset of this kind (aliases included).
        names: the canonical dataset names, for messages and help.
        n_classes: ``(dataset, options) -> number of classes`` (without reading any data).
        check_options: ``(dataset, options) -> options``: the ``dataset_options`` setting
            checked for this dataset (``ValueError``/``TypeError`` naming the option).
        settings: the :class:`~batsnn.experiments.config.TrainConfig` fields only this kind
            reads; another kind's run must leave them at their defaults.
        open: ``cfg -> DataSource``, the run's data.
    """

    name: str
    canonical: Callable[[str], str | None]
    names: tuple[str, ...]
    n_classes: Callable[[str, Mapping], int]
    check_options: Callable[[str, Mapping], dict]
    settings: tuple[str, ...]
    open: Callable[[Any], DataSource]
