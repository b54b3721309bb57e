"""The time-discretization study: sweeps over dt and seeds, and per-layer discretization error.

``batsnn sweep`` trains one model per (dt, seed) into ``DIR/runs/<dt>-seed<k>`` (each a normal
``batsnn train`` directory, so a finished pair is skipped and a partial one resumed on rerun),
then writes ``sweep.csv``, ``summary.csv`` (mean and std per dt), plots and ``report.md``.
``batsnn discretization-error`` runs the same input through stacks of random layers with and
without dt and reports per layer how far the spike trains moved.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from batsnn.experiments.train import _atomic_write, _write_csv

__all__ = ["run_discretization_error", "run_sweep", "spike_train_error", "sweep_rows"]

_ROW_KEYS_FIXED = ("test_accuracy", "best_test_accuracy", "decision_time_ms",
                   "label_spike_share_25ms", "label_spike_share_50ms", "label_spike_share_100ms",
                   "label_spike_share_200ms", "silent_labels_pct")


def _dt_name(dt: float) -> str:
    return f"dt{dt * 1e3:g}ms"


def _train_one(cfg_dict: dict, threads: int, quiet: bool) -> dict:
    """Worker: train one (dt, seed) run, resuming a partial one. Returns its summary."""
    if threads:
        torch.set_num_threads(threads)
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover
            pass
    from batsnn.experiments.train import TrainConfig, train

    cfg = TrainConfig(**cfg_dict)
    resume = (Path(cfg.out) / "last.pt").exists()
    return train(cfg, resume=resume, quiet=True, log=(lambda *a: None) if quiet else print)


def _finished(out: Path, epochs: int) -> bool:
    p = out / "summary.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("epochs_completed", 0) >= epochs
    except (json.JSONDecodeError, OSError):
        return False


def sweep_rows(out: Path, dts, seeds) -> list[dict]:
    """One row per finished (dt, seed) run, read from the runs' ``summary.json``."""
    rows = []
    for dt in dts:
        for seed in seeds:
            run = out / "runs" / f"{_dt_name(dt)}-seed{seed}"
            p = run / "summary.json"
            if not p.is_file():
                continue
            s = json.loads(p.read_text())
            with open(run / "metrics.csv") as f:
                history = list(csv.DictReader(f))
            row = {"dt": dt, "seed": seed}
            for k in _ROW_KEYS_FIXED:
                row[k] = s.get(k)
            for k in sorted(s):
                if k.startswith(("spikes_per_sample_l", "silent_neurons_pct_l")):
                    row[k] = s[k]
            row["train_seconds"] = sum(float(r["train_seconds"]) for r in history)
            row["epochs"] = s.get("epochs_completed")
            row["run_dir"] = str(run)
            rows.append(row)
    return rows


def _mean_std(values):
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float)
                                                                and math.isnan(v))]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def _summary_rows(rows: list[dict], dts) -> list[dict]:
    keys = [k for k in rows[0] if k not in ("dt", "seed", "run_dir", "epochs")] if rows else []
    out = []
    for dt in dts:
        sel = [r for r in rows if r["dt"] == dt]
        if not sel:
            continue
        s = {"dt": dt, "n_seeds": len(sel)}
        for k in keys:
            s[f"{k}_mean"], s[f"{k}_std"] = _mean_std([r[k] for r in sel])
        out.append(s)
    return out


def run_sweep(args) -> list[dict]:
    """``batsnn sweep``: see the module docstring. ``args`` is the parsed command line."""
    from batsnn.cli import _overrides
    from batsnn.experiments.train import resolve_config, resolve_device

    if not args.dt:
        raise ValueError("--dt needs at least one value")
    if any(d < 0 or not math.isfinite(d) for d in args.dt):
        raise ValueError(f"dt values must be finite and >= 0, got {args.dt}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not args.out:
        raise ValueError("--out DIR is required for a sweep")
    out = Path(args.out)
    dts = list(dict.fromkeys(args.dt))
    seeds = list(range(1, args.seeds + 1))
    overrides = _overrides(args, skip=("dt", "seed", "out"))
    base = resolve_config(args.preset, args.config, **overrides)
    device = resolve_device(base.device)
    jobs = args.jobs or (1 if device.type == "cuda" else max(1, os.cpu_count() or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if device.type == "cpu" else 0
    todo = []
    for dt in dts:
        for seed in seeds:
            run = out / "runs" / f"{_dt_name(dt)}-seed{seed}"
            cfg = resolve_config(args.preset, args.config, **overrides, dt=dt, seed=seed,
                                 out=str(run))
            if _finished(run, cfg.epochs) or getattr(args, "report_only", False):
                continue
            todo.append(cfg)
    out.mkdir(parents=True, exist_ok=True)
    done = len(dts) * len(seeds) - len(todo)
    print(f"sweep: {len(dts)} dt x {len(seeds)} seeds, {done} finished already, {len(todo)} "
          f"to train with {jobs} at once on {device}", flush=True)
    from dataclasses import asdict

    t0 = time.perf_counter()
    if jobs == 1:
        for cfg in todo:
            s = _train_one(asdict(cfg), threads, args.quiet)
            print(f"  dt {cfg.dt or 0:g} s seed {cfg.seed}: test accuracy "
                  f"{100 * s['test_accuracy']:.2f}%", flush=True)
    elif todo:
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_train_one, asdict(cfg), threads, True): cfg for cfg in todo}
            for fut in as_completed(futs):
                cfg = futs[fut]
                s = fut.result()
                print(f"  dt {cfg.dt or 0:g} s seed {cfg.seed}: test accuracy "
                      f"{100 * s['test_accuracy']:.2f}%", flush=True)
    rows = sweep_rows(out, dts, seeds)
    _write_csv(out / "sweep.csv", rows)
    summary = _summary_rows(rows, dts)
    _write_csv(out / "summary.csv", summary)
    _sweep_plots(out, summary)
    _report(out, base, summary, rows, dts, seeds, time.perf_counter() - t0)
    print(f"sweep results in {out} (sweep.csv, summary.csv, report.md, plots)", flush=True)
    return rows


def _sweep_plots(out: Path, summary: list[dict]) -> None:
    from batsnn.experiments import plots

    if not summary:
        return
    xs = [1e3 * s["dt"] for s in summary]
    col = lambda k: ([s[f"{k}_mean"] for s in summary], [s[f"{k}_std"] for s in summary])  # noqa: E731
    acc = col("test_accuracy")
    plots.errorbar_plot(xs, {"test accuracy": ([100 * v for v in acc[0]],
                                               [100 * v for v in acc[1]])},
                        out / "accuracy_vs_dt.png", xlabel="dt (ms)",
                        ylabel="test accuracy (%)", title="accuracy against time step")
    layers = sorted({k[:-5] for k in summary[0] if k.startswith("spikes_per_sample_l")
                     and k.endswith("_mean")}, key=lambda k: int(k.rsplit("l", 1)[1]))
    plots.errorbar_plot(xs, {f"layer {k.rsplit('l', 1)[1]}": col(k) for k in layers},
                        out / "spikes_vs_dt.png", xlabel="dt (ms)", ylabel="spikes per sample",
                        title="sparsity against time step", logy=True)
    plots.errorbar_plot(xs, {"decision time": col("decision_time_ms")},
                        out / "latency_vs_dt.png", xlabel="dt (ms)", ylabel="ms",
                        title="mean decision time against time step")
    share = {f"by {ms} ms": tuple([100 * v for v in vals] for vals in
                                  col(f"label_spike_share_{ms}ms")) for ms in (25, 50, 100, 200)}
    plots.errorbar_plot(xs, share, out / "label_spikes_vs_dt.png", xlabel="dt (ms)",
                        ylabel="% of target label spikes", title="label-neuron evidence by time")


def _fmt(m, s, scale=1.0, digits=2):
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def _epochs_done(rows: list[dict]) -> str:
    done = [r["epochs"] for r in rows]
    if not done:
        return "0"
    return str(min(done)) if min(done) == max(done) else f"{min(done)} to {max(done)}"


def _report(out: Path, cfg, summary, rows, dts, seeds, seconds) -> None:
    import batsnn

    cmd = "batsnn " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else \
        "batsnn sweep"
    layers = sorted({k[:-5] for k in (summary[0] if summary else {})
                     if k.startswith("spikes_per_sample_l") and k.endswith("_mean")})
    lines = [
        f"# Time-step sweep: {cfg.preset or 'custom'} on {cfg.dataset}", "",
        f"Produced by `{cmd}` with batsnn {batsnn.__version__}.", "",
        f"{len(dts)} time steps x {len(seeds)} seeds (seeds {seeds[0]}..{seeds[-1]}, the same "
        f"initial weights and data order for every dt); {cfg.epochs} epochs set, "
        f"{_epochs_done(rows)} completed per run; "
        f"train samples: {cfg.train_samples or 'all'}, test samples: "
        f"{cfg.test_samples or 'all'}. Mean ± standard deviation over seeds.", "",
        "| dt (ms) | test accuracy (%) | " + " | ".join(
            f"spikes/sample l{k.rsplit('l', 1)[1]}" for k in layers)
        + " | decision time (ms) | label spikes by 50 ms (%) | train s |",
        "|---" * (5 + len(layers)) + "|",
    ]
    for s in summary:
        lines.append(
            f"| {1e3 * s['dt']:g} | {_fmt(s['test_accuracy_mean'], s['test_accuracy_std'], 100)}"
            " | " + " | ".join(_fmt(s[f"{k}_mean"], s[f"{k}_std"], 1, 1) for k in layers)
            + f" | {_fmt(s['decision_time_ms_mean'], s['decision_time_ms_std'], 1, 1)}"
            + f" | {_fmt(s['label_spike_share_50ms_mean'], s['label_spike_share_50ms_std'], 100, 1)}"
            + f" | {s['train_seconds_mean']:.0f} |")
    lines += ["", "![accuracy](accuracy_vs_dt.png)", "", "![spikes](spikes_vs_dt.png)", "",
              "![latency](latency_vs_dt.png)", "", "![label spikes](label_spikes_vs_dt.png)", "",
              f"Total wall time of this invocation: {seconds:.0f} s.", ""]
    _atomic_write(out / "report.md", "\n".join(lines).encode())


# ----------------------------------------------------------------------------- discretization error

def spike_train_error(cont, disc) -> dict:
    """Compare two layers' spike trains (same inputs, with and without dt).

    Returns the mean squared difference (ms^2) over spike slots present in both (the k-th
    spike of a neuron matched with its k-th spike), the share of (sample, neuron) pairs whose
    spike count changed, and the spike counts per sample of each.
    """
    tc, td = cont.times.double(), disc.times.double()
    both = torch.isfinite(tc) & torch.isfinite(td)
    diff = torch.where(both, tc - td, torch.zeros_like(tc)) * 1e3
    n_pairs = int(both.sum())
    mse = float((diff ** 2).sum()) / n_pairs if n_pairs else math.nan
    b = cont.counts.shape[0]
    return {"mse_ms2": mse, "rmse_ms": math.sqrt(mse) if n_pairs else math.nan,
            "matched_spikes": n_pairs,
            "count_changed_share": float((cont.counts != disc.counts).double().mean()),
            "spikes_per_sample_continuous": float(cont.counts.sum()) / b,
            "spikes_per_sample_discrete": float(disc.counts.sum()) / b}


def run_discretization_error(args) -> list[dict]:
    """``batsnn discretization-error``: per-layer error of discretized against continuous
    spike trains for stacks of ``depth`` hidden layers sharing the same random weights."""
    from batsnn.experiments import plots
    from batsnn.encoding import ttfs_encode
    from batsnn.nn import LIFLinear
    from batsnn.experiments.train import resolve_device

    if not args.depths or any(d < 1 for d in args.depths):
        raise ValueError(f"--depths must be integers >= 1, got {args.depths}")
    if not args.dt or any(d <= 0 or not math.isfinite(d) for d in args.dt):
        raise ValueError(f"--dt values must be finite and > 0, got {args.dt}")
    if args.width < 1 or args.samples < 1:
        raise ValueError("--width and --samples must be >= 1")
    device = resolve_device(args.device)
    out = Path(args.out)
    g = torch.Generator().manual_seed(args.seed)
    if args.dataset == "random":
        x = torch.rand(args.samples, 784, generator=g)
        x = torch.where(torch.rand(args.samples, 784, generator=g) < 0.5, x, torch.zeros_like(x))
        x = (x * 255).round()
    else:
        from batsnn.experiments.data import load_dataset

        x = load_dataset(args.dataset, args.data_dir).test_x[:args.samples].float()
    max_depth = max(args.depths)
    torch.manual_seed(args.seed)
    # one set of weights; a network of depth d uses the first d hidden layers
    weights = [torch.empty(args.width, 784 if i == 0 else args.width).uniform_(-1, 1)
               for i in range(max_depth)]
    rows = []
    for depth in sorted(set(args.depths)):
        for dt in [0.0] + sorted(set(args.dt)):
            layers = []
            for i in range(depth):
                layer = LIFLinear(weights[i].shape[1], args.width, tau_s=0.13, theta=args.theta,
                                  max_spikes=args.max_spikes, dt=dt or None, t_max=0.2)
                with torch.no_grad():
                    layer.weight.copy_(weights[i])
                layers.append(layer.to(device))
            h = ttfs_encode(x.to(device), x_max=255.0, dt=dt or None)
            outs = []
            with torch.no_grad():
                for layer in layers:
                    h = layer(h)
                    outs.append(h)
            if dt == 0.0:
                reference = outs
                continue
            for li, (c, d) in enumerate(zip(reference, outs)):
                rows.append({"depth": depth, "layer": li + 1, "dt": dt,
                             **spike_train_error(c, d)})
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "discretization_error.csv", rows)
    for depth in sorted(set(args.depths)):
        sel = [r for r in rows if r["depth"] == depth]
        series = {}
        for dt in sorted(set(args.dt)):
            rr = [r for r in sel if r["dt"] == dt]
            series[f"dt {dt * 1e3:g} ms"] = ([r["rmse_ms"] for r in rr], [0.0] * len(rr))
        plots.errorbar_plot(list(range(1, depth + 1)), series,
                            out / f"rmse_by_layer_depth{depth}.png", xlabel="layer",
                            ylabel="RMS spike-time error (ms)",
                            title=f"{depth} hidden layers: error by layer")
    deepest = [r for r in rows if r["depth"] == max_depth]
    series = {f"layer {li}": ([r["count_changed_share"] * 100 for r in deepest if r["layer"] == li],
                              [0.0] * len(args.dt)) for li in range(1, max_depth + 1)}
    plots.errorbar_plot([1e3 * d for d in sorted(set(args.dt))], series,
                        out / "count_changed_vs_dt.png", xlabel="dt (ms)",
                        ylabel="neurons with changed count (%)",
                        title=f"{max_depth} hidden layers: spike-count changes")
    print(f"discretization error of {len(rows)} (depth, layer, dt) cases written to "
          f"{out / 'discretization_error.csv'} with plots", flush=True)
    return rows
