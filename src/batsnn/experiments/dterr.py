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
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import batsnn
from batsnn import metrics as M
from batsnn.encoding import ttfs_encode
from batsnn.experiments.config import resolve_config, resolve_device
from batsnn.experiments.model import device_memory
from batsnn.experiments.rundir import MARKER, prepare_out, read_json, write_csv, write_json
from batsnn.nn import LIFLinear

__all__ = ["CSV_NAME", "DEPTH", "DT", "LAYER", "run_discretization_error"]

CSV_NAME = "discretization_error.csv"
#: the columns that identify a row (the others are :func:`batsnn.metrics.spike_train_error`'s)
DEPTH, LAYER, DT = "depth", "layer", "dt"


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
                             preset: str | None = None,
                             log: Callable[[str], Any] = print) -> list[dict]:
    """Per-layer error of discretized against exact spike trains (see the module docstring).

    Args:
        depths: numbers of hidden layers (ints >= 1); ``None`` with ``preset``.
        dts: time steps in seconds (> 0).
        out: output directory (created).
        width: neurons per layer.
        seed: seeds the weights (uniform in [-1, 1]) and the random inputs.
        samples: input samples.
        dataset: a dataset name (its first test images) or ``"random"``; default
            ``fashion-mnist``, or the preset's dataset.
        data_dir: where the dataset's files are.
        theta, max_spikes: every layer's threshold and spike buffer (``tau_s`` 0.13 s,
            ``t_max`` 0.2 s).
        device: ``auto``, ``cpu`` or ``cuda``.
        preset: a preset's name (:data:`batsnn.experiments.config.PRESETS`): compare its
            network instead of stacks of ``width``-neuron layers (``width``, ``theta`` and
            ``max_spikes`` are then the preset's).
        log: where the closing line goes.

    Returns:
        the CSV's rows: ``{depth, layer, dt, **spike_train_error(...)}``.
    """
    if preset is not None:
        if depths is not None:
            raise ValueError("give either depths or preset, not both")
        return _preset_error(preset, dts, out, seed=seed, samples=samples, dataset=dataset,
                             data_dir=data_dir, device=device, log=log)
    dataset = dataset or "fashion-mnist"
    depths, dts = list(depths), list(dts)
    if not depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"depths must be integers >= 1, got {depths}")
    if not dts or any(not d > 0 or not math.isfinite(d) for d in dts):
        raise ValueError(f"dt values must be finite and > 0, got {dts}")
    if width < 1 or samples < 1:
        raise ValueError(f"width and samples must be >= 1, got {width} and {samples}")
    dts = [float(d) for d in dts]
    dev = resolve_device(device)
    out = Path(out)
    settings = {"depths": sorted(set(depths)), "dts": sorted(set(dts)), "width": width,
                "seed": seed, "samples": samples, "dataset": dataset, "theta": theta,
                "max_spikes": max_spikes}
    if prepare_out(out, "discretization-error", resume=True):
        stored = read_json(out / "config.json").get("settings")
        if stored != settings:
            stored = stored if isinstance(stored, dict) else {}
            diff = [f"{k} {stored.get(k)!r} -> {v!r}" for k, v in settings.items()
                    if stored.get(k) != v]
            raise ValueError(f"{out} holds a discretization-error result with other settings: "
                             + ", ".join(diff) + "; choose another --out")
    need = 4 * width * (784 + (max(depths) - 1) * width)  # float32 weights of every layer
    have = device_memory(torch.device("cpu"))
    if have is not None and need > have:
        raise MemoryError(f"{max(depths)} layers of width {width} need {need / 2**30:.1f} GiB "
                          f"of weights but the machine has {have / 2**30:.1f} GiB in all: "
                          "lower --width or --depths")
    x = _inputs(dataset, samples, seed, data_dir)
    write_json(out / "config.json", {MARKER: "discretization-error",
                                     "batsnn_version": batsnn.__version__,
                                     "settings": settings, "device": str(dev)})
    max_depth = max(depths)
    torch.manual_seed(seed)
    # one set of weights; a network of depth d uses the first d hidden layers
    weights = [torch.empty(width, 784 if i == 0 else width).uniform_(-1, 1)
               for i in range(max_depth)]
    grid = sorted(set(dts))
    rows = []
    for depth in sorted(set(depths)):
        reference = None
        for dt in [0.0] + grid:
            h = ttfs_encode(x.to(dev), x_max=255.0, dt=dt or None)
            outs = []
            with torch.no_grad():
                for i in range(depth):
                    layer = LIFLinear(weights[i].shape[1], width, tau_s=0.13, theta=theta,
                                      max_spikes=max_spikes, dt=dt or None, t_max=0.2)
                    layer.weight.copy_(weights[i])
                    h = layer.to(dev)(h)
                    outs.append(h)
            if reference is None:
                reference = outs
                continue
            for li, (c, d) in enumerate(zip(reference, outs)):
                rows.append({DEPTH: depth, LAYER: li + 1, DT: dt, **M.spike_train_error(c, d)})
    write_csv(out / CSV_NAME, rows)
    _plots(out, rows, sorted(set(depths)), grid)
    log(f"discretization error of {len(rows)} (depth, layer, dt) cases written to "
        f"{out / CSV_NAME} with plots")
    return rows


def _preset_error(preset, dts, out, *, seed, samples, dataset, data_dir, device, log):
    """:func:`run_discretization_error` of a preset's network (see the module docstring)."""
    from batsnn.experiments.data import DATASETS, canonical_name
    from batsnn.experiments.model import build_network, network_input_shape

    dts = list(dts)
    if not dts or any(not d > 0 or not math.isfinite(d) for d in dts):
        raise ValueError(f"dt values must be finite and > 0, got {dts}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    cfg = resolve_config(preset, device=device)
    dataset = dataset or cfg.dataset
    n_classes = DATASETS[canonical_name(cfg.dataset)][0]
    dev = resolve_device(cfg.device)
    x = _inputs(dataset, samples, seed, data_dir)
    shape = network_input_shape(cfg.network, x.shape[1])
    grid = sorted(set(dts))
    reference, rows = None, []
    for dt in [0.0] + grid:
        torch.manual_seed(seed)  # the same weights for every dt
        net = build_network(cfg.network, shape, n_classes, tau_s=cfg.tau_s, t_max=cfg.t_max,
                            init=cfg.init, dt=dt or None).to(dev)
        h = ttfs_encode(x.to(dev), x_max=255.0, t_window=cfg.t_window, dt=dt or None)
        with torch.no_grad():
            outs = net.forward_all(h.reshape(h.shape[0], *shape, h.shape[-1]))
        if reference is None:
            reference = outs
            continue
        for li, (c, d) in enumerate(zip(reference, outs)):
            rows.append({DEPTH: len(outs), LAYER: li + 1, DT: dt, **M.spike_train_error(c, d)})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / CSV_NAME, rows)
    _plots(out, rows, [len(reference)], grid)
    log(f"discretization error of the {preset} network ({len(reference)} layers, "
        f"{len(grid)} dt) written to {out / CSV_NAME} with plots")
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
