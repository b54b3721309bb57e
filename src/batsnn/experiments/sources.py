"""Where a run's samples come from: the data-source interface the training loop uses, and
its implementation for image datasets.

A :class:`DataSource` hands out labelled samples as spike times, by split (``"train"``,
``"test"``) and sample index, without the loop knowing what they were: images encoded to
spike times (:class:`ImageSource`, the datasets of :mod:`batsnn.experiments.data`) or
event streams that already are spike times (a later implementation). What the loop asks:

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
- ``keep_on(device)``: hold the training split where the steps run.

:class:`Split` is a view of some samples of one split (evaluation walks through it).
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from batsnn.encoding import discretize, ttfs_encode
from batsnn.experiments.augment import batch_grid, deform_by_grid
from batsnn.experiments.data import Dataset, load_dataset
from batsnn.experiments.model import check_fits, network_input_shape
from batsnn.spikes import mark_valid

__all__ = ["SPLITS", "DataSource", "ImageSource", "Split", "encode_images", "open_source"]

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


def open_source(cfg: Any) -> DataSource:
    """The data source of a run's settings: ``cfg.dataset`` from ``cfg.data_dir``, its first
    ``cfg.train_samples``/``cfg.test_samples`` samples.

    Raises:
        batsnn.experiments.data.DatasetNotFound: the data is not there.
        ValueError: more samples asked for than the dataset has.
    """
    ds = load_dataset(cfg.dataset, cfg.data_dir).subset(cfg.train_samples, cfg.test_samples)
    return ImageSource(ds, cfg)


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
