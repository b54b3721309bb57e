"""The convergence run's ``report.md``."""

from __future__ import annotations

import math
import os

import batsnn
from batsnn.experiments.convergence.config import HEADLINE_LEVEL

__all__ = ["report_markdown"]


def _grid_table(rows: list[dict], variant: str, means, stds) -> str:
    """Markdown table for one variant: rows mean, columns std, cells
    ``mean best accuracy % / share converged %``."""
    by = {(r["mean"], r["std"]): r for r in rows if r["variant"] == variant}
    head = "| mean \\ std | " + " | ".join(f"{s:g}" for s in stds) + " |"
    sep = "|---|" + "---|" * len(stds)
    lines = [head, sep]
    for m in means:
        cells = []
        for s in stds:
            r = by[(f"{m:.10g}", f"{s:.10g}")]
            cells.append(f"{100 * r['mean_best_accuracy']:.0f}/{100 * r['share_converged']:.0f}")
        lines.append(f"| {m:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run_stats(cells: list[dict], epochs: int) -> str:
    """One paragraph on the individual runs of a variant: when they converge, and what the
    runs that never converge look like at the end."""
    first = sorted(e for c in cells for e in c["first_converged_epoch"] if e >= 0)
    runs = [(b >= 1.0, sf, bf, si) for c in cells for b, sf, bf, si in
            zip(c["best"], c["silent_final"], c["blind_final"], c["silent_initial"])]
    n = len(runs)
    failed = [r for r in runs if not r[0]]
    text = f"{len(first)} of {n} runs converge"
    if first:
        late = sum(e >= 0.8 * epochs for e in first)
        text += (f" (first at 100%: median epoch {first[len(first) // 2]}, 90% of them by "
                 f"epoch {first[int(0.9 * (len(first) - 1))]}, {late} at epoch >= "
                 f"{math.ceil(0.8 * epochs)})")
    text += f"; {len(failed)} never do"
    if failed:
        text += (f": at the end, {sum(r[1] for r in failed)} of them have an output neuron "
                 f"silent on both samples ({sum(r[3] for r in failed)} silent from the start) "
                 f"and {sum(r[2] for r in failed)} an output neuron with the same spike train "
                 "on both samples (silent included)")
    return text + "."


def report_markdown(cfg, res, cells: dict, n_trained: int, load_start, load_end) -> str:
    """``report.md`` of a finished run: settings, headline, time, runs and per-cell tables.

    ``cfg`` is the :class:`ConvergenceConfig`, ``res`` the
    :class:`~batsnn.experiments.convergence.run.ConvergenceResults`, ``cells`` each
    variant's cell outcomes in grid order, ``n_trained`` the cells trained in this call and
    ``load_start``/``load_end`` the load averages (or ``None``)."""
    variants = {"multi": f"multi-spike (K={cfg.max_spikes}, count loss "
                         f"{cfg.target_true:g}/{cfg.target_false:g})",
                "single": f"single-spike (TTFS cross-entropy, tau_loss {cfg.tau_loss:g} s)"}
    dt = f"{cfg.dt:g} s" if cfg.dt else "continuous time (exact)"
    lines = [
        "# Convergence: single-spike against multi-spike training", "",
        f"batsnn {batsnn.__version__}; seed {cfg.seed}; {cfg.repeats} runs per cell; "
        f"{cfg.epochs} epochs of full-batch SGD, lr {cfg.lr:g}; {dt}"
        + (f" (resets at the emitted grid times)" if cfg.dt and cfg.reset_at == "emitted"
           else "") + "; "
        f"tau_s {cfg.tau_s:g} s, theta {cfg.theta:g}, t_max {cfg.t_max:g} s; "
        f"{len(cfg.means)} means x {len(cfg.stds)} stds "
        f"({cfg.means[0]:g}..{cfg.means[-1]:g}, {cfg.stds[0]:g}..{cfg.stds[-1]:g}).", "",
        "A run's score is its best accuracy over the epochs + 1 measurements (initial weights "
        "included); it converges when that is 100%.", "",
        "## Headline", "",
    ]
    for v, h in res.headline.items():
        lines.append(f"- {variants[v]}: {h['cells_converged_90']} of {h['cells']} cells "
                     f"({100 * h['share_of_grid']:.1f}% of the grid) converge in at least "
                     f"{100 * HEADLINE_LEVEL:.0f}% of runs; {h['cells_converged_50']} cells "
                     f"in at least half of them; {100 * h['mean_share_converged']:.1f}% of all "
                     "its runs converge.")
    load = (f"; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"
            if load_start and load_end else "")
    lines += ["", "## Time", "",
              f"{n_trained} cells trained in this call; training time over all parts "
              f"{res.compute_seconds:.1f} s; this call {res.seconds:.1f} s in all "
              f"(device {cfg.device}, kernels on one thread; the machine has {os.cpu_count()} "
              f"CPUs{load}).", "",
              "## Runs", ""]
    for v in cfg.variants:
        lines += [f"- {variants[v]}: {_run_stats(cells[v], cfg.epochs)}"]
    lines += ["", "## Per cell (mean best accuracy % / runs converged %)", ""]
    for v in cfg.variants:
        lines += [f"### {variants[v]}", "", _grid_table(res.rows, v, cfg.means, cfg.stds), ""]
    lines += ["Figures: " + ", ".join(f"`convergence_{v}.png`" for v in cfg.variants)
              + (", `convergence_difference.png`, `convergence_grid.png`"
                 if len(cfg.variants) == 2 else "") + ".", ""]
    return "\n".join(lines)

