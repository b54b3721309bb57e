"""Train a dense batsnn network on Yin-Yang or Randman and print one JSON line per seed.

The network is a stack of ``LIFLinear`` layers trained with Adam on the spike-count loss
(``count``) or the TTFS cross-entropy (``ttfs``), the learning rate multiplied by
``--lr-gamma`` (default 0.5) every ``--lr-step`` epochs or annealed along a cosine to 0
(``--lr-schedule cosine``), the gradient norm optionally clipped (``--clip``), silent neurons
optionally revived after every step as ``batsnn train`` does (``--revive``, ``--revive-bump``:
:mod:`batsnn.experiments.training.revive`). After every
epoch the validation and test accuracies are measured, decoded by spike count (ties to the
lowest index, as ``count_predict``) and by spike count with ties going to the earliest first
spike (the ``_tie_break`` keys); each line reports the final epoch's test accuracy and the
test accuracy of the epoch with the best validation accuracy (model selection never reads
the test set). A layer's ``init`` is the ``(low, high)`` range of its uniform weights.

Yin-Yang (published splits, first-spike encoding with the bias spike, tau_s = 1 s); the
hidden threshold 0.3 and the output weights drawn from [0, 0.1] keep every output neuron
spiking at the start (with the default [-1, 1] some seeds begin with silent output neurons
and stay near the shallow-network accuracy)::

    PYTHONPATH=src NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python analysis/tuning/train_generated.py \
        --layers '[{"features": 300, "theta": 0.3, "max_spikes": 10},
                   {"theta": 1.0, "max_spikes": 20, "init": [0, 0.1]}]' \
        --lr 5e-3 --lr-step 20 --epochs 60 --batch 50 --seeds 1,2,3,4,5

Randman (10 classes, 20 channels, manifold dimension 1, alpha 1, 1000 samples per class,
0.1 s; tau_s = 10 ms)::

    ... --task randman --rm-channels 20 --rm-dim 1 --rm-alpha 1 --tau-s 0.01 \
        --layers '[{"features": 128, "theta": 0.005, "max_spikes": 10},
                   {"theta": 0.05, "max_spikes": 20}]' \
        --lr 5e-3 --lr-gamma 1 --epochs 60 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from batsnn.experiments.datasets import batch_spike_trains, randman, yin_yang
from batsnn.experiments.training.revive import REVIVE_MODES, Reviver
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.nn import LIFLinear


def load(args):
    """The dataset's three splits as ``(times (N, C, 1), labels (N,))`` float32 tensors."""
    if args.task == "yin-yang":
        ds = yin_yang(tau_s=args.tau_s * args.enc_scale, t_bias=args.t_bias)
    else:
        ds = randman(n_classes=args.rm_classes, n_channels=args.rm_channels, dim=args.rm_dim,
                     alpha=args.rm_alpha, samples_per_class=args.rm_samples,
                     duration=args.rm_duration, seed=args.rm_seed)
    out = {}
    for split in ("train", "valid", "test"):
        b = batch_spike_trains(ds, split, slice(None), dtype=torch.float32)
        out[split] = (b.trains.times, b.labels)
    return ds, out


def build(n_in: int, n_out: int, layers: list, args) -> torch.nn.Sequential:
    """``LIFLinear`` layers from their descriptions; the last one has ``n_out`` neurons."""
    mods, width = [], n_in
    for i, spec in enumerate(layers):
        last = i == len(layers) - 1
        features = n_out if last else spec["features"]
        mods.append(LIFLinear(width, features, tau_s=args.tau_s, theta=spec["theta"],
                              max_spikes=spec["max_spikes"], t_max=args.t_max,
                              init=tuple(spec.get("init", (-1.0, 1.0)))))
        width = features
    return torch.nn.Sequential(*mods)


def predict(out, args, tie_break: bool = False) -> torch.Tensor:
    """Predicted classes: the most spikes (``count``; with ``tie_break`` a tie goes to the
    neuron among the tied ones that spiked first) or the earliest spike (``ttfs``)."""
    if args.loss == "ttfs":
        return ttfs_predict(out.times)
    if not tie_break:
        return count_predict(out.counts)
    first = out.times[..., 0].double().clamp(max=1e9)
    return (out.counts.double() * 1e12 - first).argmax(1)


def accuracy(net, x, y, args, batch=1000) -> tuple[float, float]:
    """Shares of correctly classified samples of ``(x, y)``, without and with tie-breaking."""
    correct = np.zeros(2)
    with torch.no_grad():
        for a in range(0, len(y), batch):
            out = net(x[a:a + batch])
            for k in (0, 1):
                correct[k] += int((predict(out, args, bool(k)) == y[a:a + batch]).sum())
    return tuple(correct / len(y))


def run(seed: int, data, n_in: int, n_out: int, args) -> dict:
    """Train one network; its per-epoch accuracies and the summary of the run."""
    torch.manual_seed(seed)
    net = build(n_in, n_out, args.layers, args)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    if args.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    else:
        sched = torch.optim.lr_scheduler.StepLR(opt, args.lr_step, args.lr_gamma)
    (xtr, ytr), (xva, yva), (xte, yte) = data["train"], data["valid"], data["test"]
    reviver = Reviver(net, args.revive, args.revive_bump)
    gen = torch.Generator().manual_seed(seed)
    valid, test, start = [], [], time.perf_counter()
    for _ in range(args.epochs):
        net.train()
        order = torch.randperm(len(ytr), generator=gen)
        for a in range(0, len(ytr), args.batch):
            idx = order[a:a + args.batch]
            out = net(xtr[idx])
            if args.loss == "count":
                loss = spike_count_class_loss(out.times, out.counts, ytr[idx],
                                              target_true=args.target_true,
                                              target_false=args.target_false)
            else:
                loss = ttfs_cross_entropy(out.times, ytr[idx], tau_loss=args.tau_loss,
                                          t_max=args.t_max)
            opt.zero_grad()
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
            opt.step()
            reviver.after_step()
        sched.step()
        net.eval()
        valid.append(accuracy(net, xva, yva, args))
        test.append(accuracy(net, xte, yte, args))
    seconds = round(time.perf_counter() - start, 1)
    out = {"seed": seed, "seconds": seconds, "revived": int(reviver.revived)}
    for k, tag in ((0, ""), (1, "_tie_break")):
        v, t = [a[k] for a in valid], [a[k] for a in test]
        best = int(np.argmax(v))
        out.update({f"test_final{tag}": t[-1], f"valid_final{tag}": v[-1],
                    f"best_epoch{tag}": best + 1, f"test_at_best_valid{tag}": t[best],
                    f"valid{tag}": [round(a, 4) for a in v], f"test{tag}": [round(a, 4) for a in t]})
    return out


def main(argv=None):
    """Parse the settings, train one network per seed, print JSON lines and the means."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("yin-yang", "randman"), default="yin-yang")
    p.add_argument("--layers", type=json.loads, required=True,
                   help="JSON list of {features, theta, max_spikes[, init]}; the last layer's "
                        "features are the classes")
    p.add_argument("--loss", choices=("count", "ttfs"), default="count")
    p.add_argument("--target-true", type=float, default=15.0)
    p.add_argument("--target-false", type=float, default=3.0)
    p.add_argument("--tau-loss", type=float, default=0.5)
    p.add_argument("--tau-s", type=float, default=1.0)
    p.add_argument("--t-max", type=float, default=math.inf)
    p.add_argument("--enc-scale", type=float, default=1.0,
                   help="Yin-Yang: input times in units of enc_scale * tau_s")
    p.add_argument("--t-bias", type=float, default=0.9)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-step", type=int, default=10**9)
    p.add_argument("--lr-gamma", type=float, default=0.5,
                   help="factor applied to the learning rate every --lr-step epochs")
    p.add_argument("--lr-schedule", choices=("step", "cosine"), default="step",
                   help="step: times --lr-gamma every --lr-step epochs; cosine: from --lr down "
                        "to 0 over --epochs")
    p.add_argument("--clip", type=float, default=0.0,
                   help="largest gradient norm per step (0: no clipping)")
    p.add_argument("--revive", choices=REVIVE_MODES, default="none",
                   help="after every step raise the input weights of the neurons silent for "
                        "the whole batch: none, the output layer's, every layer's")
    p.add_argument("--revive-bump", type=float, default=0.001,
                   help="the amount added to each input weight of a silent neuron")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="1")
    p.add_argument("--rm-classes", type=int, default=10)
    p.add_argument("--rm-channels", type=int, default=100)
    p.add_argument("--rm-dim", type=int, default=2)
    p.add_argument("--rm-alpha", type=float, default=2.0)
    p.add_argument("--rm-samples", type=int, default=1000)
    p.add_argument("--rm-duration", type=float, default=0.1)
    p.add_argument("--rm-seed", type=int, default=0)
    p.add_argument("--curves", action="store_true", help="include per-epoch accuracies")
    args = p.parse_args(argv)
    ds, data = load(args)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run(seed, data, ds.n_channels, ds.n_classes, args)
        results.append(r)
        if not args.curves:
            r = {k: v for k, v in r.items() if not isinstance(v, list)}
        print(json.dumps(r), flush=True)
    for key in ("test_final", "test_at_best_valid", "test_final_tie_break",
                "test_at_best_valid_tie_break"):
        v = np.array([r[key] for r in results])
        print(f"{key}: mean {v.mean():.4f} std {v.std():.4f} over {len(v)} seeds", flush=True)


if __name__ == "__main__":
    main()
