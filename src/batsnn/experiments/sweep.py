"""The time-step study: one training run per (dt, seed), then tables, plots and a report.

:func:`run_sweep` trains one model per (dt, seed) into ``OUT/runs/dt<ms>ms-seed<k>`` (each a
normal run directory, so a finished pair is skipped and a partial one resumed on rerun), then
writes ``sweep.csv`` (one row per finished run: :data:`ROW_METRICS`, the per-layer metrics,
the training time summed over epochs, epochs and run directory), ``summary.csv`` (per dt the
number of seeds and the mean and standard deviation over seeds of every numeric column),
plots and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

import batsnn
from batsnn import metrics as M
from batsnn.experiments.config import TrainConfig, run_device, validate_config
from batsnn.experiments.rundir import RunDir, atomic_write, read_csv, read_json, write_csv

__all__ = ["DT", "EPOCHS", "N_SEEDS", "ROW_METRICS", "RUN_DIR", "SEED", "mean_key", "run_name",
           "run_sweep", "std_key", "summary_rows", "sweep_rows"]

#: sweep.csv columns besides the metrics
DT, SEED, EPOCHS, RUN_DIR = "dt", "seed", "epochs", "run_dir"
#: summary.csv column: seeds finished at that dt
N_SEEDS = "n_seeds"
#: the run summary's metrics copied into each sweep row (then the per-layer ones)
ROW_METRICS = (M.TEST_ACCURACY, M.BEST_TEST_ACCURACY, M.DECISION_TIME_MS, *M.LABEL_SHARE_KEYS,
               M.SILENT_LABELS_PCT)
_LAYER_FAMILIES = (M.SILENT_NEURONS_PCT, M.SPIKES_PER_SAMPLE)


def mean_key(key: str) -> str:
    """summary.csv column of the mean over seeds of ``key``."""
    return f"{key}_mean"


def std_key(key: str) -> str:
    """summary.csv column of the standard deviation over seeds (n - 1) of ``key``."""
    return f"{key}_std"


def run_name(dt: float, seed: int) -> str:
    """Directory name of the (dt, seed) run under ``OUT/runs``, e.g. ``dt4ms-seed2``."""
    return f"dt{dt * 1e3:g}ms-seed{seed}"


def _print(line: str) -> None:
    print(line, flush=True)


def _train_one(cfg: TrainConfig, threads: int, quiet: bool) -> dict:
    """Worker: train one (dt, seed) run, resuming a partial one. Returns its summary."""
    if threads:
        torch.set_num_threads(threads)
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover
            pass
    from batsnn.experiments.train import train

    resume = RunDir(cfg.out).has_checkpoint()
    return train(cfg, resume=resume, quiet=True, log=(lambda *a: None) if quiet else print)


def sweep_rows(out: str | os.PathLike, dts: Sequence[float], seeds: Sequence[int]) -> list[dict]:
    """One row per finished (dt, seed) run under ``out/runs``, read from its ``summary.json``
    and ``metrics.csv``; unstarted runs are left out. Order: by dt, then seed, as given."""
    rows = []
    for dt in dts:
        for seed in seeds:
            run = RunDir(Path(out) / "runs" / run_name(dt, seed))
            if not run.summary.is_file():
                continue
            s = read_json(run.summary)
            row = {DT: dt, SEED: seed}
            for k in ROW_METRICS:
                row[k] = s.get(k)
            for family in _LAYER_FAMILIES:
                for k in M.layer_keys(s, family):
                    row[k] = s[k]
            row[M.TRAIN_SECONDS] = sum(float(r[M.TRAIN_SECONDS]) for r in read_csv(run.metrics))
            row[EPOCHS] = s.get(M.EPOCHS_COMPLETED)
            row[RUN_DIR] = str(run.path)
            rows.append(row)
    return rows


def _mean_std(values) -> tuple[float, float]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float)
                                                                and math.isnan(v))]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def summary_rows(rows: list[dict], dts: Sequence[float]) -> list[dict]:
    """Per dt (in the order of ``dts``, those with rows only): ``dt``, ``n_seeds`` and, for
    every metric column of ``rows``, its mean and sample standard deviation over seeds (NaN
    and missing values left out; std 0 for one seed)."""
    keys = [k for k in rows[0] if k not in (DT, SEED, RUN_DIR, EPOCHS)] if rows else []
    out = []
    for dt in dts:
        sel = [r for r in rows if r[DT] == dt]
        if not sel:
            continue
        s = {DT: dt, N_SEEDS: len(sel)}
        for k in keys:
            s[mean_key(k)], s[std_key(k)] = _mean_std([r.get(k) for r in sel])
        out.append(s)
    return out


def run_sweep(base: TrainConfig, dts: Sequence[float], seeds: Sequence[int],
              out: str | os.PathLike, *, jobs: int = 0, report_only: bool = False,
              quiet: bool = False, command: str | None = None,
              log: Callable[[str], Any] = _print) -> list[dict]:
    """Train one run per (dt, seed) with the settings of ``base`` and write the tables, plots
    and report (see the module docstring).

    Args:
        base: the settings shared by every run (its ``dt``, ``seed`` and ``out`` are replaced).
        dts: time steps in seconds (>= 0; 0 is exact time); duplicates are dropped.
        seeds: seeds (ints); duplicates are dropped.
        out: the sweep directory.
        jobs: trainings at once (0: one per CPU core on a CPU, 1 on a GPU); several run in
            separate processes.
        report_only: train nothing; rebuild the tables, plots and report from finished runs.
        quiet: no per-epoch output from the trainings (in one process).
        command: the command line to name in the report (default: this function).
        log: where progress lines go.

    Returns:
        the rows of ``sweep.csv``.
    """
    dts = list(dict.fromkeys(float(d) for d in dts))
    seeds = list(dict.fromkeys(seeds))
    if not dts:
        raise ValueError("dts needs at least one value")
    if any(d < 0 or not math.isfinite(d) for d in dts):
        raise ValueError(f"dt values must be finite and >= 0, got {dts}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints, got {seeds}")
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0, got {jobs}")
    out = Path(out)
    device = run_device(base)
    jobs = jobs or (1 if device.type == "cuda" else max(1, os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if device.type == "cpu" else 0
    todo = []
    for dt in dts:
        for seed in seeds:
            run = out / "runs" / run_name(dt, seed)
            cfg = validate_config(dataclasses.replace(base, network=[dict(s) for s in base.network],
                                                      dt=dt, seed=seed, out=str(run)))
            if report_only or RunDir(run).is_finished(cfg.epochs):
                continue
            todo.append(cfg)
    out.mkdir(parents=True, exist_ok=True)
    done = len(dts) * len(seeds) - len(todo)
    log(f"sweep: {len(dts)} dt x {len(seeds)} seeds, {done} finished already, {len(todo)} "
        f"to train with {jobs} at once on {device}")

    def finished(cfg, s):
        log(f"  dt {cfg.dt or 0:g} s seed {cfg.seed}: test accuracy "
            f"{100 * s[M.TEST_ACCURACY]:.2f}%")

    t0 = time.perf_counter()
    if jobs == 1:
        for cfg in todo:
            finished(cfg, _train_one(cfg, threads, quiet))
    elif todo:
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_train_one, cfg, threads, True): cfg for cfg in todo}
            for fut in as_completed(futs):
                finished(futs[fut], fut.result())
    rows = sweep_rows(out, dts, seeds)
    write_csv(out / "sweep.csv", rows)
    summary = summary_rows(rows, dts)
    write_csv(out / "summary.csv", summary)
    _plots(out, summary)
    report = _report(base, summary, rows, dts, seeds, time.perf_counter() - t0,
                     command or "batsnn.experiments.sweep.run_sweep")
    atomic_write(out / "report.md", report.encode())
    log(f"sweep results in {out} (sweep.csv, summary.csv, report.md, plots)")
    return rows


def _plots(out: Path, summary: list[dict]) -> None:
    from batsnn.experiments import plots

    if not summary:
        return
    xs = [1e3 * s[DT] for s in summary]

    def col(k, scale=1.0):
        return ([scale * s[mean_key(k)] for s in summary],
                [scale * s[std_key(k)] for s in summary])

    plots.errorbar_plot(xs, {"test accuracy": col(M.TEST_ACCURACY, 100)},
                        out / "accuracy_vs_dt.png", xlabel="dt (ms)",
                        ylabel="test accuracy (%)", title="accuracy against time step")
    layers = M.layer_keys([k[:-len("_mean")] for k in summary[0] if k.endswith("_mean")],
                          M.SPIKES_PER_SAMPLE)
    plots.errorbar_plot(xs, {f"layer {M.layer_of(k)}": col(k) for k in layers},
                        out / "spikes_vs_dt.png", xlabel="dt (ms)", ylabel="spikes per sample",
                        title="sparsity against time step", logy=True)
    plots.errorbar_plot(xs, {"decision time": col(M.DECISION_TIME_MS)},
                        out / "latency_vs_dt.png", xlabel="dt (ms)", ylabel="ms",
                        title="mean decision time against time step")
    share = {f"by {ms} ms": col(M.label_share_key(ms), 100) for ms in M.LATENCY_MS}
    plots.errorbar_plot(xs, share, out / "label_spikes_vs_dt.png", xlabel="dt (ms)",
                        ylabel="% of target label spikes", title="label-neuron evidence by time")


def _fmt(m, s, scale=1.0, digits=2) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def _epochs_done(rows: list[dict]) -> str:
    done = [r[EPOCHS] for r in rows]
    if not done:
        return "0"
    return str(min(done)) if min(done) == max(done) else f"{min(done)} to {max(done)}"


def _report(cfg: TrainConfig, summary, rows, dts, seeds, seconds: float, command: str) -> str:
    layers = M.layer_keys([k[:-len("_mean")] for k in (summary[0] if summary else {})
                           if k.endswith("_mean")], M.SPIKES_PER_SAMPLE)
    share50 = M.label_share_key(50)
    lines = [
        f"# Time-step sweep: {cfg.preset or 'custom'} on {cfg.dataset}", "",
        f"Produced by `{command}` with batsnn {batsnn.__version__}.", "",
        f"{len(dts)} time steps x {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}, the "
        f"same initial weights and data order for every dt); {cfg.epochs} epochs set, "
        f"{_epochs_done(rows)} completed per run; "
        f"train samples: {cfg.train_samples or 'all'}, test samples: "
        f"{cfg.test_samples or 'all'}. Mean ± standard deviation over seeds.", "",
        "| dt (ms) | test accuracy (%) | " + " | ".join(
            f"spikes/sample l{M.layer_of(k)}" for k in layers)
        + " | decision time (ms) | label spikes by 50 ms (%) | train s |",
        "|---" * (5 + len(layers)) + "|",
    ]
    for s in summary:
        lines.append(
            f"| {1e3 * s[DT]:g} | "
            + _fmt(s[mean_key(M.TEST_ACCURACY)], s[std_key(M.TEST_ACCURACY)], 100)
            + " | " + " | ".join(_fmt(s[mean_key(k)], s[std_key(k)], 1, 1) for k in layers)
            + " | " + _fmt(s[mean_key(M.DECISION_TIME_MS)], s[std_key(M.DECISION_TIME_MS)], 1, 1)
            + " | " + _fmt(s[mean_key(share50)], s[std_key(share50)], 100, 1)
            + f" | {s[mean_key(M.TRAIN_SECONDS)]:.0f} |")
    lines += ["", "![accuracy](accuracy_vs_dt.png)", "", "![spikes](spikes_vs_dt.png)", "",
              "![latency](latency_vs_dt.png)", "", "![label spikes](label_spikes_vs_dt.png)", "",
              f"Total wall time of this invocation: {seconds:.0f} s.", ""]
    return "\n".join(lines)
