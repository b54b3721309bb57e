"""Where a run's samples come from: the data-source interface the training loop uses, and
its implementation for image datasets.

A :class:`DataSource` hands out labelled samples as spike times, by split (``"train"``,
``"test"``) and sample index, without the loop knowing what they were: images encoded to
spike times (:class:`ImageSource`, the datasets of :mod:`batsnn.experiments.data`) or
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
only it reads, and how to open it), listed in :func:`data_kinds`; :func:`open_source` and
the settings' checks (:mod:`batsnn.experiments.config`) find a dataset's kind there.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch

from batsnn.encoding import discretize, ttfs_encode
from batsnn.experiments.augment import batch_grid, deform_by_grid
from batsnn.experiments.data import DATASETS, Dataset, canonical_name, load_dataset
from batsnn.experiments.model import check_fits, network_input_shape
from batsnn.fileio import printable
from batsnn.spikes import mark_valid

__all__ = ["IMAGE_KIND", "SPLITS", "DataKind", "DataSource", "ImageSource", "Split",
           "data_kind", "data_kinds", "dataset_names", "encode_images", "open_source"]

#: the splits of a data source
SPLITS = ("train", "test")


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


class ImageSource(DataSource):
    """Images of a :class:`batsnn.experiments.data.Dataset` (uint8), encoded to one spike
    time per pixel (:func:`encode_images`), training batches deformed per ``cfg.augment``
    (:func:`batsnn.experiments.augment.batch_grid`).

    Args:
        dataset: the images and labels.
        cfg: the run's settings (:class:`~batsnn.experiments.config.TrainConfig`): the
            encoding window, the network (input shape), the augmentation and the seed.
    """

    def __init__(self, dataset: Dataset, cfg: Any):
        self.dataset, self.cfg = dataset, cfg
        self._x = {"train": dataset.train_x, "test": dataset.test_x}
        self._y = {"train": dataset.train_y, "test": dataset.test_y}
        self.n_classes = dataset.n_classes
        self.n_inputs = int(dataset.train_x.shape[1])
        self.input_shape = tuple(network_input_shape(cfg.network, self.n_inputs))
        self.origin = dataset.source

    def size(self, split):
        """Number of images in ``split``."""
        return len(self._y[split])

    def inputs(self, split, idx, device, *, dt, shift=None, draw=None):
        """The images ``idx`` of ``split``, deformed by ``draw``, as spike times
        (:func:`encode_images`)."""
        images = self._x[split][idx]
        if draw is not None:
            images = deform_by_grid(images, draw)
        return encode_images(images, self.cfg, device, dt=dt, shift=shift)

    def labels(self, split, idx, device=None):
        """The labels of the images ``idx`` of ``split``."""
        y = self._y[split][idx]
        return y if device is None else y.to(device)

    def batch_draw(self, *, epoch, batch):
        """The control displacements of the batch's elastic deformation, or ``None``
        (``cfg.augment == "none"``)."""
        return batch_grid(self.cfg.augment, seed=self.cfg.seed, epoch=epoch, batch=batch)

    def check_fits(self, device, batch_size):
        """The network's estimate (:func:`batsnn.experiments.model.check_fits`; one input
        spike per pixel)."""
        check_fits(self.cfg, self.n_inputs, self.n_classes, device, batch_size)

    def keep_on(self, device):
        """Move the training images and labels to ``device`` (uint8: 47 MB for MNIST)."""
        self._x["train"] = self._x["train"].to(device)
        self._y["train"] = self._y["train"].to(device)


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


def _image_name(name: str) -> str | None:
    try:
        return canonical_name(name)
    except ValueError:
        return None


def _no_options(dataset: str, options: Mapping) -> dict:
    if options:
        raise ValueError(f"dataset_options: {dataset} takes no options, got "
                         f"{printable(', '.join(map(str, options)))}")
    return {}


def _open_images(cfg: Any) -> DataSource:
    ds = load_dataset(cfg.dataset, cfg.data_dir).subset(cfg.train_samples, cfg.test_samples)
    return ImageSource(ds, cfg)


#: images encoded to one spike per pixel (:class:`ImageSource`)
IMAGE_KIND = DataKind("images", _image_name, tuple(DATASETS),
                      lambda name, options: DATASETS[name][0], _no_options, ("augment",),
                      _open_images)


def data_kinds() -> tuple[DataKind, ...]:
    """Every kind of data, in the order names are looked up."""
    from batsnn.experiments.event_source import EVENT_KIND

    return (IMAGE_KIND, EVENT_KIND)


def dataset_names() -> tuple[str, ...]:
    """The canonical names of every dataset a run can train on."""
    return tuple(n for kind in data_kinds() for n in kind.names)


def data_kind(name: str) -> tuple[DataKind, str]:
    """The kind of the dataset ``name`` and its canonical name; ``ValueError`` listing
    every dataset for an unknown name."""
    if not isinstance(name, str):
        raise TypeError(f"dataset must be str, got {type(name).__name__}")
    for kind in data_kinds():
        key = kind.canonical(name)
        if key is not None:
            return kind, key
    raise ValueError(f"unknown dataset {printable(repr(name))}; choose from "
                     f"{', '.join(dataset_names())}")


def open_source(cfg: Any) -> DataSource:
    """The data source of a run's settings: ``cfg.dataset`` (read from ``cfg.data_dir``, or
    generated), its first ``cfg.train_samples``/``cfg.test_samples`` samples, as its kind
    opens it (:func:`data_kind`: images, event streams).

    Raises:
        batsnn.experiments.data.DatasetNotFound, FileNotFoundError: the data is not there.
        ValueError: more samples asked for than the dataset has; a bad dataset file.
        MemoryError: the data as spike trains cannot fit in memory (the message names the
            sizes).
    """
    kind, _ = data_kind(cfg.dataset)
    return kind.open(cfg)


def encode_images(images: torch.Tensor, cfg: Any, device, dt=...,
                  shift: torch.Tensor | None = None) -> torch.Tensor:
    """TTFS spike times of uint8 images ``(B, ...)`` (window ``cfg.t_window``, grid
    ``cfg.dt`` unless ``dt`` is given; with ``shift``, ``(B,)`` seconds on ``device``, each
    image's times moved that much later before they are put on the grid,
    :meth:`~batsnn.experiments.timestep.DtMode.shifts`) on ``device``, shaped as
    ``cfg.network`` takes them: ``(B, N, 1)`` float32, or ``(B, 1, H, W, 1)`` maps for a
    network starting with a conv or pool layer
    (:func:`batsnn.experiments.model.network_input_shape`); uint8 values lie in [0, 255] by
    type, so they are encoded without value checks (no host synchronisation) and the times
    are still known valid (:func:`batsnn.ttfs_encode`)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    x = images.to(device, non_blocking=True).reshape(images.shape[0], -1)
    dt = cfg.dt if dt is ... else dt
    if shift is None or not dt:
        t = ttfs_encode(x, t_window=cfg.t_window, x_max=255.0, dt=dt, dtype=torch.float32,
                        validate=False)
    else:  # the cell is found in float64, the grid point rounded once to float32
        t = ttfs_encode(x, t_window=cfg.t_window, x_max=255.0, dtype=torch.float32,
                        validate=False).to(torch.float64)
        t = mark_valid(discretize(t + shift.to(torch.float64).reshape(-1, 1, 1), dt)
                       .to(torch.float32))
    shape = network_input_shape(cfg.network, x.shape[1])
    # the maps of a conv network: the same (valid) times, so the same mark
    return t if len(shape) == 1 else mark_valid(t.reshape(x.shape[0], *shape, t.shape[-1]))
