"""When and how often a trained count network's label neuron fires, in exact time and on
its run's time grid: one JSON line per checkpoint.

For a run trained with ``--dt DT`` (any ``--dt-mode``), the checkpoint's weights are run on
the first test images twice, in exact time and on the grid of ``DT`` (inputs and every
layer), and the output layer's spikes are summarised: accuracy, output and label spikes per
sample, the median time of the label neuron's first and last spike, the median gap between
its consecutive spikes and the share of gaps shorter than one step. ``--dt`` names the
grids instead (0: exact time), for any run, also one trained in exact time. ``--reset-at``
runs the layers with their resets at the continuous crossing or at the emitted grid time
(default: the run's own, ``emitted`` for ``--dt-mode consistent``).

    python analysis/label_spikes.py RUN_DIR [--checkpoint last|best] [--test-samples 2000]
        [--dt 0,4e-3,8e-3] [--reset-at crossing|emitted]
"""

from __future__ import annotations

import argparse
import json

import torch

from batsnn.experiments import train as T
from batsnn.experiments.common import float_list
from batsnn.experiments.data import load_dataset
from batsnn.experiments.runs import load_run_model
from batsnn.experiments.sweep import check_dts
from batsnn.params import RESET_AT
from batsnn.spikes import SpikeTrains


def summarise(model, base, cfg, images, labels, dt, batch: int | None = None) -> dict:
    """The output layer's spikes of ``model`` on ``images`` on the grid ``dt`` (``None``:
    exact time), run ``batch`` images at a time (default: the run's eval batch size)."""
    T.set_network_grid(model, base, dt)
    batch = batch or cfg.eval_batch_size
    with torch.no_grad():
        parts = [model.forward_all(T.encode_images(images[i:i + batch], cfg, "cpu", dt=dt))
                 for i in range(0, len(images), batch)]
    outs = [SpikeTrains(torch.cat([t.times for t in layer]), torch.cat([t.counts for t in layer]))
            for layer in zip(*parts)]
    out = outs[-1]
    lab = out.times[torch.arange(len(labels)), labels.long()]
    fin = torch.isfinite(lab)
    gaps = (lab[:, 1:] - lab[:, :-1])[fin[:, 1:]]
    first = lab[:, 0][fin[:, 0]]
    last = lab.masked_fill(~fin, -1.0).max(1).values[fin[:, 0]]

    def ms(v):
        return round(1e3 * float(v.median()), 2) if v.numel() else None

    step = dt or 0.0
    return {"accuracy_pct": round(100 * float((out.counts.argmax(1) == labels).float().mean()), 2),
            "hidden_spikes": round(float(outs[0].counts.flatten(1).sum(1).float().mean()), 1),
            "output_spikes": round(float(out.counts.sum(1).float().mean()), 1),
            "label_spikes": round(float(fin.sum(1).float().mean()), 1),
            "first_label_spike_ms": ms(first), "last_label_spike_ms": ms(last),
            "median_label_gap_ms": ms(gaps),
            # on the grid gaps are whole steps (up to float rounding of k * dt)
            "label_gaps_below_dt_pct": round(100 * float((gaps < 0.999 * step).float().mean()), 1)
            if gaps.numel() and step else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a batsnn train run directory (trained with --dt > 0)")
    p.add_argument("--checkpoint", default="last", choices=("last", "best"))
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--data-dir", help="where the dataset is (default: the run's setting)")
    p.add_argument("--dt", type=float_list, help="comma-separated grids to run on, in "
                   "seconds (0: exact time); default: exact time and the run's dt")
    p.add_argument("--reset-at", choices=RESET_AT,
                   help="when the layers reset on the grid (default: as the run trained)")
    args = p.parse_args(argv)
    try:
        cfg, model, ck = load_run_model(args.run, args.checkpoint)
    except ValueError as e:
        p.error(str(e))
    model.eval()
    if args.dt is not None:
        try:
            grids = check_dts(args.dt)
        except ValueError as e:
            p.error(f"--dt: {e}")
        named = [(f"dt {1e3 * g:g} ms" if g else "exact", g or None) for g in grids]
    elif not cfg.dt:
        p.error(f"{args.run} was trained without a time step (--dt): name the grids with --dt")
    else:
        named = [("exact", None), ("grid", cfg.dt)]
    ds = load_dataset(cfg.dataset, args.data_dir or cfg.data_dir).subset(None, args.test_samples)
    base = T.network_params(model)
    if args.reset_at:
        base = {m: q.replace(reset_at=args.reset_at) for m, q in base.items()}
    row = {"run": args.run, "checkpoint": args.checkpoint, "epoch": ck["epoch"],
           "dt_ms": 1e3 * (cfg.dt or 0.0), "dt_mode": cfg.dt_mode, "test_samples": len(ds.test_y),
           "reset_at": next(iter(base.values())).reset_at}
    for name, dt in named:
        row[name] = summarise(model, base, cfg, ds.test_x, ds.test_y, dt)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
