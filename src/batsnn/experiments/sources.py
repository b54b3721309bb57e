"""Where a run's samples come from: the data sources of images (:class:`ImageSource`) and
the kinds of data a run can read (:func:`data_kinds`: images here, event streams in
:mod:`batsnn.experiments.event_source`), which :func:`open_source` and the settings'
checks (:mod:`batsnn.experiments.config`) look a dataset up in.

The interface every source implements, :class:`DataSource` (with :class:`Split` and
:class:`DataKind`), is defined in :mod:`batsnn.experiments.datasource` and exported here
too. A new kind of data is one module defining its source and its :class:`DataKind`, and
one entry in :func:`data_kinds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from batsnn.encoding import ttfs_encode
from batsnn.experiments.augment import batch_grid, deform_by_grid
from batsnn.experiments.data import DATASETS, Dataset, canonical_name, load_dataset
from batsnn.experiments.datasource import (SPLITS, DataKind, DataSource, Split,
                                          shifted_on_grid)
from batsnn.experiments.event_source import EVENT_KIND
from batsnn.experiments.model import check_fits, network_input_shape
from batsnn.fileio import printable
from batsnn.spikes import mark_valid

__all__ = ["IMAGE_KIND", "SPLITS", "DataKind", "DataSource", "ImageSource", "Split",
           "data_kind", "data_kinds", "dataset_names", "encode_images", "open_source"]

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
        t = mark_valid(shifted_on_grid(ttfs_encode(x, t_window=cfg.t_window, x_max=255.0,
                                                   dtype=torch.float32, validate=False),
                                       dt, shift))
    shape = network_input_shape(cfg.network, x.shape[1])
    # the maps of a conv network: the same (valid) times, so the same mark
    return t if len(shape) == 1 else mark_valid(t.reshape(x.shape[0], *shape, t.shape[-1]))
