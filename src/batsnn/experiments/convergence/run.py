"""The convergence run: cells trained chunk by chunk into part files, then the table, heat
maps and report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import batsnn
from batsnn.experiments.config import resolve_device
from batsnn.experiments.convergence.config import CSV_COLUMNS, HEADLINE_LEVEL, ConvergenceConfig
from batsnn.experiments.convergence.data import experiment_data, initial_weights
from batsnn.experiments.convergence.heatmaps import plot_heatmaps
from batsnn.experiments.convergence.parts import load_parts
from batsnn.experiments.convergence.report import report_markdown
from batsnn.experiments.convergence.train import GroupedRun, single_threaded, train_grouped
from batsnn.experiments.rundir import (MARKER, atomic_write, make_subdir, prepare_out,
                                       write_csv, write_json)

__all__ = ["ConvergenceResults", "run_convergence"]


@dataclass
class ConvergenceResults:
    """What :func:`run_convergence` returns.

    Attributes:
        rows: one dict per (variant, mean, std) with :data:`CSV_COLUMNS`.
        headline: per variant, ``cells_converged_90`` (cells where at least 90% of the runs
            converge), ``cells``, ``share_of_grid`` (the first over the second),
            ``cells_converged_50`` (at least half of the runs) and ``mean_share_converged``
            (share of all runs of the grid that converge).
        seconds: wall time of this call; compute_seconds: training time summed over all
            parts (including those of earlier, interrupted calls).
        out: the run directory.
    """

    rows: list
    headline: dict
    seconds: float
    compute_seconds: float
    out: Path


def _cell_outcome(mean: float, std: float, run: GroupedRun, sl: slice) -> dict:
    acc = run.accuracy[sl].cpu()
    best = acc.max(1).values
    reached = acc >= 1.0
    first = torch.where(reached.any(1), reached.to(torch.int64).argmax(1), -1)

    def silent(counts):  # (B, n, C) -> (runs,) 0/1: a neuron silent on every sample
        return (counts[:, sl].sum(0) == 0).any(1).to(torch.int64).cpu().tolist()

    def blind(times):  # (B, n, C, K) -> (runs,) 0/1: a neuron with the same train throughout
        t = times[:, sl]
        return (t == t[:1]).all(3).all(0).any(1).to(torch.int64).cpu().tolist()

    return {"mean": mean, "std": std, "best": best.tolist(), "initial": acc[:, 0].tolist(),
            "final": acc[:, -1].tolist(), "first_converged_epoch": first.tolist(),
            "silent_initial": silent(run.counts_initial),
            "silent_final": silent(run.counts_final),
            "blind_final": blind(run.times_final),
            "diverged": run.diverged[sl].cpu().to(torch.int64).tolist()}


def _row(variant: str, cell: dict) -> dict:
    n = len(cell["best"])

    def mean_of(values):
        return round(sum(values) / n, 6)

    return {"variant": variant, "mean": f"{cell['mean']:.10g}", "std": f"{cell['std']:.10g}",
            "mean_best_accuracy": mean_of(cell["best"]),
            "share_converged": mean_of([float(v >= 1.0) for v in cell["best"]]),
            "repeats": n,
            "mean_initial_accuracy": mean_of(cell["initial"]),
            "share_converged_at_init": mean_of([float(v >= 1.0) for v in cell["initial"]]),
            "mean_final_accuracy": mean_of(cell["final"]),
            "share_silent_init": mean_of(cell["silent_initial"]),
            "share_silent_final": mean_of(cell["silent_final"]),
            "share_blind_final": mean_of(cell["blind_final"]),
            "share_diverged": mean_of(cell["diverged"])}


def _headline(rows: list[dict], variants) -> dict:
    out = {}
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        good = sum(r["share_converged"] >= HEADLINE_LEVEL for r in vr)
        half = sum(r["share_converged"] >= 0.5 for r in vr)
        out[v] = {"cells_converged_90": good, "cells": len(vr),
                  "share_of_grid": good / len(vr),
                  "cells_converged_50": half,
                  "mean_share_converged": sum(r["share_converged"] for r in vr) / len(vr)}
    return out




def _progress(total: int, quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="convergence", unit="cell", dynamic_ncols=True)


def run_convergence(cfg: ConvergenceConfig, out, *, quiet: bool = False,
                    log=print) -> ConvergenceResults:
    """Run (or continue) the convergence experiment into directory ``out``.

    Cells already finished in ``out`` with the same :meth:`ConvergenceConfig.settings` are
    skipped; each chunk of ``cfg.chunk_cells`` cells is written as a part file when done, so
    a stopped run loses at most the chunk in progress. The result depends only on the
    settings and the grid, not on the chunking or on interruptions. Writes
    ``convergence.csv``, the heat maps, ``report.md`` and ``config.json`` at the end.

    Raises:
        SettingsMismatch: ``out`` holds finished parts made with other settings.
        ValueError: ``out`` holds a file that is not a part file, or other files.
    """
    t_start = time.perf_counter()
    load_start = _loadavg()
    out = Path(out)
    cfg.check_size()  # the fields may have been changed after construction
    device = resolve_device(cfg.device)
    settings = cfg.settings()
    # new, empty, or a convergence run (continued); parts made with other settings refused
    prepare_out(out, "convergence", resume=True)
    done, past_seconds, next_id = load_parts(out, settings)
    config = {MARKER: "convergence", **dataclasses.asdict(cfg), "batsnn": batsnn.__version__,
              "device": str(device)}
    write_json(out / "config.json", config)
    make_subdir(out, "parts")

    todo = [(v, m, s) for v in cfg.variants for m in cfg.means for s in cfg.stds
            if (v, m, s) not in done]
    n_cells = len(cfg.variants) * len(cfg.means) * len(cfg.stds)
    if done and todo and log:
        log(f"continuing {out}: {n_cells - len(todo)} of {n_cells} cells already done")
    compute = _train_cells(cfg, todo, out, device, done, next_id, quiet)

    rows = [_row(v, done[(v, m, s)]) for v in cfg.variants for m in cfg.means for s in cfg.stds]
    write_csv(out / "convergence.csv", [{c: r[c] for c in CSV_COLUMNS} for r in rows])
    headline = _headline(rows, cfg.variants)
    plot_heatmaps(rows, cfg, out)
    seconds = time.perf_counter() - t_start
    results = ConvergenceResults(rows, headline, seconds, past_seconds + compute, out)
    write_json(out / "config.json", config)
    cells = {v: [done[(v, m, s)] for m in cfg.means for s in cfg.stds] for v in cfg.variants}
    atomic_write(out / "report.md", report_markdown(cfg, results, cells, len(todo), load_start,
                                                    _loadavg()).encode())
    if log:
        for v, h in headline.items():
            log(f"{v}-spike: {h['cells_converged_90']}/{h['cells']} cells "
                f"({100 * h['share_of_grid']:.1f}% of the grid) converge in >= 90% of runs")
        log(f"{len(todo)} cells trained in {compute:.1f} s (call {seconds:.1f} s); "
            f"results in {out}")
    return results


def _train_cells(cfg: ConvergenceConfig, todo: list, out: Path, device, done: dict,
                 next_id: int, quiet: bool) -> float:
    """Train the cells ``todo`` (``(variant, mean, std)``) chunk by chunk, writing a part
    file per chunk and adding each cell's outcome to ``done``; returns the training time."""
    dtype = getattr(torch, cfg.dtype)
    settings = cfg.settings()
    inputs, labels = experiment_data(cfg.dt, dtype, device)
    bar = _progress(len(todo), quiet)
    compute = 0.0
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: bar is not None and bar.close())
        stack.enter_context(single_threaded())
        for variant in cfg.variants:
            cells = [(m, s) for (v, m, s) in todo if v == variant]
            for start in range(0, len(cells), cfg.chunk_cells):
                chunk = cells[start:start + cfg.chunk_cells]
                t0 = time.perf_counter()
                w0 = torch.cat([initial_weights(cfg.seed, variant, m, s, cfg.repeats, dtype)
                                for m, s in chunk]).to(device)
                run = train_grouped(w0, variant, cfg, inputs, labels)
                outcomes = [_cell_outcome(m, s, run, slice(i * cfg.repeats,
                                                           (i + 1) * cfg.repeats))
                            for i, (m, s) in enumerate(chunk)]
                seconds = time.perf_counter() - t0
                compute += seconds
                write_json(out / "parts" / f"part-{next_id:05d}.json",
                           {"settings": settings, "variant": variant, "seconds": seconds,
                            "batsnn": batsnn.__version__, "cells": outcomes})
                next_id += 1
                for cell in outcomes:
                    done[(variant, cell["mean"], cell["std"])] = cell
                if bar is not None:
                    bar.update(len(chunk))
    return compute


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None

