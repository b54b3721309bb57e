"""Heat maps of the share of converged runs over the grid of initial weights."""

from __future__ import annotations

from pathlib import Path

import torch

from batsnn.experiments.convergence.config import ConvergenceConfig

__all__ = ["MAX_INCHES", "plot_heatmaps"]

#: the largest side of one heat map (inches, at 150 dpi)
MAX_INCHES = 30.0

_TITLES = {"multi": "multi-spike (count loss)", "single": "single-spike (TTFS)"}


def _share_grid(rows, variant, means, stds) -> torch.Tensor:
    by = {(r["mean"], r["std"]): r["share_converged"] for r in rows if r["variant"] == variant}
    return torch.tensor([[by[(f"{m:.10g}", f"{s:.10g}")] for s in stds] for m in means],
                        dtype=torch.float64)


def _heatmap(ax, values, means, stds, *, cmap, vmin, vmax, title, fmt):
    import matplotlib
    import matplotlib.colors as mcolors

    im = ax.imshow(values.numpy(), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(stds)), [f"{s:g}" for s in stds])
    ax.set_yticks(range(len(means)), [f"{m:g}" for m in means])
    ax.set_xlabel("std of the initial weights")
    ax.set_ylabel("mean of the initial weights")
    ax.set_title(title)
    if len(means) * len(stds) <= 400:
        norm = mcolors.Normalize(vmin, vmax)
        cm = matplotlib.colormaps[cmap]
        small = 7 if max(len(means), len(stds)) > 10 else 9
        for i in range(len(means)):
            for j in range(len(stds)):
                v = float(values[i, j])
                r, g, b, _ = cm(norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=small,
                        color="white" if dark else "black")
    if len(stds) > 8:
        ax.tick_params(axis="x", labelrotation=90)
    return im


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    from batsnn.experiments.plots import save_png

    save_png(fig, path, dpi=150)


def plot_heatmaps(rows: list[dict], cfg: ConvergenceConfig, out) -> list[Path]:
    """Heat maps of the share of converged runs: one PNG per variant
    (``convergence_<variant>.png``) and, with both variants, their difference
    (``convergence_difference.png``, multi minus single in percentage points) and the three
    side by side (``convergence_grid.png``). Returns the paths written."""
    plt = _pyplot()
    out = Path(out)
    means, stds = cfg.means, cfg.stds
    paths = []
    share = {v: 100 * _share_grid(rows, v, means, stds) for v in cfg.variants}
    label = "runs reaching 100% accuracy (%)"
    pct = "{:.0f}".format
    # inches; at most MAX_INCHES a side, so a grid of many values does not make an image
    # of billions of pixels
    size = (min(0.42 * len(stds) + 2.2, MAX_INCHES), min(0.36 * len(means) + 1.6, MAX_INCHES))
    panels = [(v, share[v], "viridis", 0, 100, f"{_TITLES[v]}", label, pct)
              for v in cfg.variants]
    if len(cfg.variants) == 2:
        diff = share["multi"] - share["single"]
        panels.append(("difference", diff, "RdBu_r", -100, 100,
                       "multi-spike minus single-spike", "difference (percentage points)",
                       "{:+.0f}".format))
    for name, values, cmap, vmin, vmax, title, clabel, fmt in panels:
        fig, ax = plt.subplots(figsize=(max(size[0], 4.5), max(size[1], 3.5)))
        im = _heatmap(ax, values, means, stds, cmap=cmap, vmin=vmin, vmax=vmax, title=title,
                      fmt=lambda v, f=fmt: f(v).replace("+0", "0"))
        fig.colorbar(im, ax=ax, label=clabel)
        path = out / f"convergence_{name}.png"
        _save_png(fig, path)
        paths.append(path)
    if len(panels) == 3:
        fig, axes = plt.subplots(1, 3, figsize=(3 * max(size[0], 4.5), max(size[1], 3.5)))
        for ax, (name, values, cmap, vmin, vmax, title, clabel, fmt) in zip(axes, panels):
            im = _heatmap(ax, values, means, stds, cmap=cmap, vmin=vmin, vmax=vmax,
                          title=title, fmt=lambda v, f=fmt: f(v).replace("+0", "0"))
            fig.colorbar(im, ax=ax, label=clabel)
        path = out / "convergence_grid.png"
        _save_png(fig, path)
        paths.append(path)
    return paths

