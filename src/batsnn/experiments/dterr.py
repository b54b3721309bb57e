"""The discretization-error study: the same inputs through stacks of random layers with and
without a time step, compared layer by layer.

For each depth ``d`` (hidden layers) and each ``dt``, a stack of the first ``d`` of one set of
random ``width``-neuron layers runs on the same TTFS-encoded inputs in exact time and with
``dt``; :func:`batsnn.metrics.spike_train_error` compares every layer's spike trains. Writes
``discretization_error.csv`` (one row per depth, layer and dt), ``rmse_by_layer_depth<d>.png``
and ``count_changed_vs_dt.png``, and ``config.json`` (the settings, marking the directory as
batsnn's). A directory holding an earlier result is rewritten only when its settings are the
same; other non-empty directories are refused.

With a ``preset`` the network is instead the preset's (e.g. ``mnist-conv``: convolutions
and pooling), with random weights from ``seed`` (the preset's initialisation), compared
layer by layer as a whole (one depth: its number of spike-making layers, pooling included,
flatten left out).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import batsnn
from batsnn import metrics as M
from batsnn.encoding import ttfs_encode
from batsnn.experiments.common import SettingsMismatch, check_seed
from batsnn.experiments.config import resolve_config, resolve_device
from batsnn.experiments.model import device_memory
from batsnn.experiments.rundir import MARKER, prepare_out, read_json, write_csv, write_json
from batsnn.fileio import printable
from batsnn.nn import LIFLinear
from batsnn.params import RESET_AT, LIFParams

__all__ = ["CSV_NAME", "DEPTH", "DT", "LAYER", "MAX_DEPTH", "MAX_DEPTHS", "MAX_DTS",
           "MAX_SAMPLES", "run_discretization_error"]

CSV_NAME = "discretization_error.csv"
#: the columns that identify a row (the others are :func:`batsnn.metrics.spike_train_error`'s)
DEPTH, LAYER, DT = "depth", "layer", "dt"
#: at most this many input samples
MAX_SAMPLES = 100_000
#: at most this many time steps
MAX_DTS = 1000
#: the deepest stack and the most distinct depths of a run (the stacks of every depth run one
#: after the other, each as deep as its depth); the width is bounded by the memory estimate
MAX_DEPTH = 1000
MAX_DEPTHS = 100
#: settings added after results were first written: a result without them had these values
ADDED_SETTINGS = {"reset_at": "crossing"}


def _inputs(dataset: str, samples: int, seed: int, data_dir) -> torch.Tensor:
    """``(samples, 784)`` pixel values in [0, 255]."""
    if dataset == "random":  # half of the inputs spike, at uniform times
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(samples, 784, generator=g)
        x = torch.where(torch.rand(samples, 784, generator=g) < 0.5, x, torch.zeros_like(x))
        return (x * 255).round()
    from batsnn.experiments.data import load_dataset

    return load_dataset(dataset, data_dir).test_x[:samples].float()


def run_discretization_error(depths: Sequence[int], dts: Sequence[float],
                             out: str | os.PathLike, *, width: int = 800, seed: int = 0,
                             samples: int = 100, dataset: str | None = None,
                             data_dir: str | os.PathLike | None = None, theta: float = 0.2,
                             max_spikes: int = 30, device: str = "auto",
                             preset: str | None = None, reset_at: str = "crossing",
                             log: Callable[[str], Any] = print) -> list[dict]:
    """Per-layer error of discretized against exact spike trains (see the module docstring).

    Args:
        depths: numbers of hidden layers (ints >= 1); ``None`` with ``preset``.
        dts: time steps in seconds (> 0).
        out: output directory (created).
        width: neurons per layer.
        seed: seeds the weights (uniform in [-1, 1]) and the random inputs; in
            ``[0, 2**32 - 1]``.
        samples: input samples (at most :data:`MAX_SAMPLES`).
        dataset: a dataset name (its first test images) or ``"random"``; default
            ``fashion-mnist``, or the preset's dataset.
        data_dir: where the dataset's files are.
        theta, max_spikes: every layer's threshold and spike buffer (``tau_s`` 0.13 s,
            ``t_max`` 0.2 s).
        device: ``auto``, ``cpu`` or ``cuda``.
        preset: a preset's name (:data:`batsnn.experiments.config.PRESETS`): compare its
            network instead of stacks of ``width``-neuron layers (``width``, ``theta`` and
            ``max_spikes`` are then the preset's).
        reset_at: where a spike's reset applies on the grid: ``crossing`` (the continuous
            crossing time) or ``emitted`` (the emitted grid time); the exact-time reference
            is the same for both.
        log: where the closing line goes.

    Returns:
        the CSV's rows: ``{depth, layer, dt, **spike_train_error(...)}``.

    Raises:
        ValueError / TypeError: a bad argument (named with its value), or ``out`` holding
            other files or a result with other settings.
        MemoryError: the weights and spike trains would not fit in memory (estimated before
            anything is allocated).
    """
    seed, samples, dts = _check_common(seed, samples, dts, reset_at)
    if preset is not None:
        if depths is not None:
            raise ValueError("give either depths or preset, not both")
        return _preset_error(preset, dts, out, seed=seed, samples=samples, dataset=dataset,
                             data_dir=data_dir, device=device, reset_at=reset_at, log=log)
    dataset = dataset or "fashion-mnist"
    depths, width, max_spikes = _check_stack(depths, width, samples, theta, max_spikes)
    dev = resolve_device(device)
    out = Path(out)
    settings = {"depths": depths, "dts": dts, "width": width, "seed": seed, "samples": samples,
                "dataset": dataset, "theta": theta, "max_spikes": max_spikes,
                "reset_at": reset_at}
    _prepare(out, settings)
    x = _inputs(dataset, samples, seed, data_dir)
    write_json(out / "config.json", {MARKER: "discretization-error",
                                     "batsnn_version": batsnn.__version__,
                                     "settings": settings, "device": str(dev)})
    torch.manual_seed(seed)
    # one set of weights; a network of depth d uses the first d hidden layers
    weights = [torch.empty(width, 784 if i == 0 else width).uniform_(-1, 1)
               for i in range(max(depths))]
    x = x.to(dev)
    rows = []
    neuron = dict(theta=theta, max_spikes=max_spikes, reset_at=reset_at)
    for depth in depths:
        reference = _run_stack(x, weights[:depth], 0.0, **neuron)
        for dt in dts:
            rows += _error_rows(depth, dt, reference, _run_stack(x, weights[:depth], dt, **neuron))
    write_csv(out / CSV_NAME, rows)
    _plots(out, rows, depths, dts)
    log(f"discretization error of {len(rows)} (depth, layer, dt) cases written to "
        f"{printable(out / CSV_NAME)} with plots")
    return rows


def _check_common(seed, samples, dts, reset_at) -> tuple[int, int, list[float]]:
    """The seed, the number of samples and the sorted distinct time steps, checked."""
    seed = check_seed(seed)
    if not _is_int(samples) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    samples = int(samples)
    if samples > MAX_SAMPLES:
        raise ValueError(f"samples {samples} is more than the limit of {MAX_SAMPLES}")
    dts = list(dts)
    if not dts or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Real)
                      or not d > 0 or not math.isfinite(d) for d in dts):
        raise ValueError(f"dt values must be finite and > 0, got {dts}")
    if len(set(dts)) > MAX_DTS:
        raise ValueError(f"{len(set(dts))} dt values, more than the limit of {MAX_DTS}")
    if reset_at not in RESET_AT:
        raise ValueError(f"reset_at must be one of {', '.join(RESET_AT)}, got {reset_at!r}")
    return seed, samples, sorted({float(d) for d in dts})


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _check_stack(depths, width, samples, theta,
                 max_spikes) -> tuple[list[int], int, int]:
    """The sorted distinct depths, the width and max_spikes, checked; the stack's weights
    and spike trains estimated against the machine's memory before anything is
    allocated."""
    depths = list(depths)
    bad = [d for d in depths if not _is_int(d) or not 1 <= d <= MAX_DEPTH]
    if not depths or bad:
        raise ValueError(f"depths must be integers >= 1 and <= {MAX_DEPTH}, got "
                         f"{printable(repr(bad[0]) if bad else '[]', 80)}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if len(set(depths)) > MAX_DEPTHS:
        raise ValueError(f"depths: {len(set(depths))} distinct values, more than the limit "
                         f"of {MAX_DEPTHS}")
    for name, v in (("width", width), ("max_spikes", max_spikes)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    width, max_spikes = int(width), int(max_spikes)
    LIFParams(tau_s=0.13, theta=theta, max_spikes=max_spikes, t_max=0.2)  # checks theta
    deepest = max(depths)
    need = 4 * width * (784 + (deepest - 1) * width)  # float32 weights of every layer
    # the exact reference and one grid's spike trains of every layer: float32 times, counts
    need += 2 * deepest * samples * width * (4 * max_spikes + 8)
    have = device_memory(torch.device("cpu"))
    if have is not None and need > have:
        raise MemoryError(f"{deepest} layers of width {width} with {samples} samples and "
                          f"max_spikes {max_spikes} need about {need / 2**30:.1f} GiB but the "
                          f"machine has {have / 2**30:.1f} GiB in all: lower --width, "
                          "--depths, --samples or --max-spikes")
    return sorted(set(depths)), width, max_spikes


def _prepare(out: Path, settings: dict) -> None:
    """``out`` new, empty, or holding a discretization-error result of the same
    ``settings`` (:class:`SettingsMismatch` listing the differences otherwise)."""
    if not prepare_out(out, "discretization-error", resume=True):
        return
    doc = read_json(out / "config.json")
    stored = doc.get("settings") if isinstance(doc, dict) else None
    stored = {**ADDED_SETTINGS, **stored} if isinstance(stored, dict) else {}
    if stored != settings:
        diff = [printable(f"{k} {stored.get(k)!r} -> {v!r}", 120)
                for k, v in settings.items() if stored.get(k) != v]
        raise SettingsMismatch(f"{printable(out)} holds a discretization-error result with "
                               "other settings: " + ", ".join(diff) + "; choose another --out")


def _run_stack(x: torch.Tensor, weights: list[torch.Tensor], dt: float, *, theta: float,
               max_spikes: int, reset_at: str) -> list:
    """The spike trains of every layer of the stack ``weights`` on the pixel values ``x``,
    at time step ``dt`` (0: exact time)."""
    h = ttfs_encode(x, x_max=255.0, dt=dt or None)
    outs = []
    with torch.no_grad():
        for w in weights:
            layer = LIFLinear(w.shape[1], w.shape[0], tau_s=0.13, theta=theta,
                              max_spikes=max_spikes, dt=dt or None, t_max=0.2,
                              reset_at=reset_at)
            layer.weight.copy_(w)
            h = layer.to(x.device)(h)
            outs.append(h)
    return outs


def _error_rows(depth: int, dt: float, reference: list, outs: list) -> list[dict]:
    """One row per layer of a network: its spike trains ``outs`` at ``dt`` against the
    exact ``reference``."""
    return [{DEPTH: depth, LAYER: li + 1, DT: dt, **M.spike_train_error(c, d)}
            for li, (c, d) in enumerate(zip(reference, outs))]


def _preset_error(preset, dts, out, *, seed, samples, dataset, data_dir, device, reset_at,
                  log):
    """:func:`run_discretization_error` of a preset's network (see the module docstring)."""
    from batsnn.experiments.model import build_network, network_input_shape
    from batsnn.experiments.sources import IMAGE_KIND, data_kind

    cfg = resolve_config(preset, device=device)
    kind, _ = data_kind(cfg.dataset)
    if dataset is None and kind is not IMAGE_KIND:
        raise ValueError(f"discretization-error feeds images to a preset's network, and preset "
                         f"{preset} trains on {cfg.dataset} ({kind.name}): pass --dataset (an "
                         "image dataset, or random)")
    dataset = dataset or cfg.dataset
    n_classes = kind.n_classes(cfg.dataset, cfg.dataset_options)
    dev = resolve_device(cfg.device)
    out = Path(out)
    settings = {"preset": preset, "dts": dts, "seed": seed, "samples": samples,
                "dataset": dataset, "reset_at": reset_at}
    _prepare(out, settings)
    x = _inputs(dataset, samples, seed, data_dir)
    write_json(out / "config.json", {MARKER: "discretization-error",
                                     "batsnn_version": batsnn.__version__,
                                     "settings": settings, "device": str(dev)})
    shape = network_input_shape(cfg.network, x.shape[1])

    def network(dt):
        torch.manual_seed(seed)  # the same weights for every dt
        net = build_network(cfg.network, shape, n_classes, tau_s=cfg.tau_s, t_max=cfg.t_max,
                            init=cfg.init, dt=dt or None, reset_at=reset_at).to(dev)
        h = ttfs_encode(x.to(dev), x_max=255.0, t_window=cfg.t_window, dt=dt or None)
        with torch.no_grad():
            return net.forward_all(h.reshape(h.shape[0], *shape, h.shape[-1]))

    reference = network(0.0)
    n_layers = len(reference)
    rows = [r for dt in dts for r in _error_rows(n_layers, dt, reference, network(dt))]
    write_csv(out / CSV_NAME, rows)
    _plots(out, rows, [n_layers], dts)
    log(f"discretization error of the {preset} network ({n_layers} layers, "
        f"{len(dts)} dt) written to {printable(out / CSV_NAME)} with plots")
    return rows


def _plots(out: Path, rows: list[dict], depths: list[int], grid: list[float]) -> None:
    from batsnn.experiments import plots

    for depth in depths:
        series = {}
        for dt in grid:
            rr = [r for r in rows if r[DEPTH] == depth and r[DT] == dt]
            series[f"dt {dt * 1e3:g} ms"] = ([r[M.RMSE_MS] for r in rr], [0.0] * len(rr))
        plots.errorbar_plot(list(range(1, depth + 1)), series,
                            out / f"rmse_by_layer_depth{depth}.png", xlabel="layer",
                            ylabel="RMS spike-time error (ms)",
                            title=f"{depth} hidden layers: error by layer")
    deepest = [r for r in rows if r[DEPTH] == depths[-1]]
    series = {f"layer {li}": ([100 * r[M.COUNT_CHANGED_SHARE] for r in deepest if r[LAYER] == li],
                              [0.0] * len(grid)) for li in range(1, depths[-1] + 1)}
    plots.errorbar_plot([1e3 * d for d in grid], series, out / "count_changed_vs_dt.png",
                        xlabel="dt (ms)", ylabel="neurons with changed count (%)",
                        title=f"{depths[-1]} hidden layers: spike-count changes")
