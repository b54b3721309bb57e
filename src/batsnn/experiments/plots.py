"""PNG plots of runs and sweeps (matplotlib, headless)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from batsnn import metrics as M  # noqa: E402
from batsnn.experiments.rundir import atomic_write  # noqa: E402

__all__ = ["errorbar_plot", "learning_curves", "raster", "save_png", "spikes_per_layer"]


def save_png(fig, path, dpi: int = 110) -> None:
    """Render ``fig`` as PNG into memory, close it, and write it to ``path`` through the safe
    writer (:func:`batsnn.experiments.rundir.atomic_write`)."""
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def _save(fig, path) -> None:
    save_png(fig, path, dpi=110)


def learning_curves(history: list[dict], path) -> None:
    """Loss and accuracy (train and test) against epoch; ``history`` holds metrics rows."""
    ep = [r[M.EPOCH] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.plot(ep, [r[M.TRAIN_LOSS] for r in history], "o-", label="train")
    a1.plot(ep, [r[M.TEST_LOSS] for r in history], "s-", label="test")
    a1.set(xlabel="epoch", ylabel="loss", title="loss")
    a1.legend()
    a2.plot(ep, [100 * r[M.TRAIN_ACCURACY] for r in history], "o-", label="train")
    a2.plot(ep, [100 * r[M.TEST_ACCURACY] for r in history], "s-", label="test")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    a2.legend()
    _save(fig, path)


def spikes_per_layer(history: list[dict], path) -> None:
    """Spikes per test sample of each layer against epoch (log scale)."""
    ep = [r[M.EPOCH] for r in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for k in M.layer_keys(history[0], M.SPIKES_PER_SAMPLE):
        ax.plot(ep, [max(r[k], 1e-3) for r in history], "o-", label=f"layer {M.layer_of(k)}")
    ax.set(xlabel="epoch", ylabel="spikes per sample", title="activity per layer", yscale="log")
    ax.legend()
    _save(fig, path)


def raster(outputs, labels, path) -> None:
    """Spike rasters of a few samples: one column per sample, one row per layer.

    Args:
        outputs: every layer's :class:`~batsnn.spikes.SpikeTrains` (times ``(B, N, S)``).
        labels: ``(B,)`` labels (marked on the last layer).
        path: the PNG file to write.
    """
    n_layers = len(outputs)
    n_samples = len(labels)
    fig, axes = plt.subplots(n_layers, n_samples, figsize=(3.2 * n_samples, 2.2 * n_layers),
                             squeeze=False)
    for li, out in enumerate(outputs):
        times = out.times.detach().cpu().double()
        for si in range(n_samples):
            ax = axes[li][si]
            t = times[si]
            n_idx, _ = (t.isfinite()).nonzero(as_tuple=True)
            ax.scatter(1e3 * t[t.isfinite()].numpy(), n_idx.numpy(), s=2, c="k", marker="|")
            if li == n_layers - 1:
                lab = int(labels[si])
                ax.axhline(lab, color="tab:red", lw=0.6, alpha=0.5)
                ax.set_xlabel("time (ms)")
            if si == 0:
                ax.set_ylabel(f"layer {li + 1} neuron")
            if li == 0:
                ax.set_title(f"test sample {si} (label {int(labels[si])})")
            ax.set_ylim(-0.5, t.shape[0] - 0.5)
    _save(fig, path)


def errorbar_plot(xs, series: dict, path, *, xlabel: str, ylabel: str, title: str,
                  logy: bool = False, legend_outside: bool = False) -> None:
    """Lines with error bars: ``series`` maps a label to ``(means, stds)`` over ``xs``, or to
    ``(x, means, stds)`` for a line with its own x values. ``legend_outside``: the legend
    right of the axes instead of over the lines (for many series)."""
    fig, ax = plt.subplots(figsize=(7.5 if legend_outside else 5.5, 3.6))
    for label, line in series.items():
        x, mean, std = line if len(line) == 3 else (xs, *line)
        std = [0.0 if (s is None or (isinstance(s, float) and math.isnan(s))) else s for s in std]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        if legend_outside:
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
