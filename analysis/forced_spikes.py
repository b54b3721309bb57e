"""How many of a trained network's spikes the grid forces: one JSON line per run.

Under ``reset_at="emitted"`` (``--dt-mode consistent``) a neuron that a reset leaves at or
above threshold fires again at the next grid point without a crossing of its own (a forced
spike, stored with ``X = +inf``; model.md section 6). For a run of a network of linear
layers this script runs its checkpoint on the first test images at the run's ``dt`` and
reports, per layer, the spikes per sample and the share of them that were forced.

    python analysis/forced_spikes.py RUN_DIR [TEST_SAMPLES] [--checkpoint last|best]
"""

from __future__ import annotations

import argparse
import json

import torch

from batsnn.experiments import train as T
from batsnn.experiments.data import load_dataset
from batsnn.experiments.runs import load_run_model
from batsnn.nn import LIFLinear
from batsnn.ops.lif import cpu
from batsnn.ops.lif.synapse import DENSE


def forced_share(model, x: torch.Tensor) -> dict:
    """Per LIF layer of ``model`` (linear layers only), run in order on the input spike
    times ``x``: spikes per sample and the share (%) of them forced by the grid."""
    out = {}
    n = x.shape[0]
    for i, layer in enumerate(m for m in model.modules() if hasattr(m, "params")):
        if not isinstance(layer, LIFLinear):
            raise SystemExit(f"forced_spikes: layer {i + 1} is a {type(layer).__name__}; "
                             "only networks of linear layers are supported")
        p = layer.params
        ev = cpu.sort_events(x, p)
        t, _, _, xs, _ = cpu.forward(ev, layer.weight.detach(), p, synapse=DENSE,
                                     need_aux=True)
        fin = torch.isfinite(t)
        total = int(fin.sum())
        forced = int((torch.isinf(xs) & fin).sum())
        out[f"layer {i + 1}"] = {"spikes_per_sample": round(total / n, 1),
                                 "forced_pct": round(100 * forced / max(total, 1), 1)}
        x = t
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a batsnn train run directory")
    p.add_argument("test_samples", nargs="?", type=int, default=2000)
    p.add_argument("--checkpoint", default="last", choices=("last", "best"))
    p.add_argument("--data-dir", help="where the dataset is (default: the run's setting)")
    args = p.parse_args(argv)
    if args.test_samples < 1:
        p.error(f"TEST_SAMPLES must be >= 1, got {args.test_samples}")
    try:
        cfg, model, ck = load_run_model(args.run, args.checkpoint)
    except ValueError as e:
        p.error(str(e))
    ds = load_dataset(cfg.dataset, args.data_dir or cfg.data_dir).subset(None, args.test_samples)
    with torch.no_grad():
        x = T.encode_images(ds.test_x, cfg, "cpu")
        layers = forced_share(model, x)
    reset_at = next(m.params.reset_at for m in model.modules() if hasattr(m, "params"))
    print(json.dumps({"run": args.run, "checkpoint": args.checkpoint, "epoch": ck["epoch"],
                      "dt_ms": 1e3 * (cfg.dt or 0.0), "reset_at": reset_at,
                      "test_samples": len(ds.test_y), **layers}))


if __name__ == "__main__":
    main()
