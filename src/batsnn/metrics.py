"""Evaluation metrics: accuracy, sparsity and latency (model.md section 6).

All functions take spike trains in the library's convention: times ``(B, N, S)`` ascending
with ``+inf`` padding and counts ``(B, N)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LATENCY_MS", "EvalStats", "decision_times", "label_spike_share"]

#: times (ms) at which the label neuron's share of target spikes is reported
LATENCY_MS = (25, 50, 100, 200)


def label_spike_share(times: torch.Tensor, labels: torch.Tensor, target: float,
                      t: float) -> torch.Tensor:
    """Per sample: the label neuron's spikes emitted by time ``t`` (s), over ``target``, capped
    at 1. ``(B,)`` float. For single-spike models ``target`` is 1."""
    lab = times[torch.arange(len(labels), device=times.device), labels.long()]
    return ((lab <= t).sum(1).to(torch.float64) / float(target)).clamp(max=1.0)


def decision_times(times: torch.Tensor, counts: torch.Tensor, mode: str) -> torch.Tensor:
    """Per sample: the earliest time after which the prediction made from the output spikes
    emitted so far no longer changes. ``(B,)`` float64 seconds, NaN for silent outputs.

    ``mode="count"``: the prediction at time t is the neuron with most spikes so far (ties:
    lowest index, as :func:`batsnn.losses.count_predict`); the decision time is that of the
    spike after which it equals the final prediction for good. ``mode="ttfs"``: the earliest
    first spike decides, so the decision time is the first output spike.
    """
    t = times.detach().to(torch.float64)
    n_batch, n_cls, _ = t.shape
    if n_batch == 0:
        return torch.zeros(0, dtype=torch.float64)
    if mode == "ttfs":
        first = t[..., 0].min(1).values
        return torch.where(torch.isinf(first), torch.full_like(first, math.nan), first)
    flat = t.reshape(n_batch, -1)
    order = flat.argsort(dim=1, stable=True)
    ev_t = flat.gather(1, order)
    ev_n = torch.div(order, t.shape[2], rounding_mode="floor")
    finite = torch.isfinite(ev_t)
    onehot = torch.nn.functional.one_hot(ev_n, n_cls) * finite.unsqueeze(-1)
    cum = onehot.cumsum(1)  # (B, E, C): counts after each event
    pred = cum.argmax(2)  # argmax takes the first maximum: lowest index on ties
    n_ev = finite.sum(1)
    final = pred.gather(1, (n_ev - 1).clamp(min=0).unsqueeze(1))
    differs = (pred != final) & finite
    idx = torch.arange(flat.shape[1], device=t.device).expand_as(pred)
    last_diff = torch.where(differs, idx, torch.full_like(idx, -1)).max(1).values
    when = ev_t.gather(1, (last_diff + 1).clamp(max=flat.shape[1] - 1).unsqueeze(1)).squeeze(1)
    return torch.where(n_ev > 0, when, torch.full_like(when, math.nan))


class EvalStats:
    """Accumulates metrics over evaluation batches.

    Args:
        layer_sizes: number of neurons of each spiking layer.
        mode: ``"count"`` or ``"ttfs"``.
        target: the label neuron's target number of spikes (1 for TTFS).
    """

    def __init__(self, layer_sizes, mode: str, target: float):
        self.mode, self.target = mode, target
        self.n = 0
        self.correct = 0
        self.loss_sum = 0.0
        self.spikes = [0.0] * len(layer_sizes)
        self.fired = [torch.zeros(s, dtype=torch.bool) for s in layer_sizes]
        self.silent_labels = 0
        self.share = {ms: 0.0 for ms in LATENCY_MS}
        self.dec_sum = 0.0
        self.dec_n = 0

    def update(self, outputs, labels: torch.Tensor, loss: float, pred: torch.Tensor) -> None:
        """Add one batch: ``outputs`` is the list of every layer's ``SpikeTrains``."""
        b = len(labels)
        self.n += b
        self.loss_sum += float(loss) * b
        self.correct += int((pred == labels).sum())
        for i, out in enumerate(outputs):
            c = out.counts
            self.spikes[i] += float(c.sum())
            self.fired[i] |= (c > 0).any(0).cpu()
        last = outputs[-1]
        lab_counts = last.counts[torch.arange(b, device=labels.device), labels]
        self.silent_labels += int((lab_counts == 0).sum())
        for ms in LATENCY_MS:
            self.share[ms] += float(label_spike_share(last.times, labels, self.target,
                                                      ms / 1000).sum())
        dec = decision_times(last.times, last.counts, self.mode)
        ok = ~torch.isnan(dec)
        self.dec_sum += float(dec[ok].sum())
        self.dec_n += int(ok.sum())

    def result(self, prefix: str = "test_") -> dict:
        """Metrics as a flat dict (accuracy as a fraction, times in ms, shares in [0, 1])."""
        n = max(self.n, 1)
        res = {f"{prefix}loss": self.loss_sum / n, f"{prefix}accuracy": self.correct / n}
        for i, s in enumerate(self.spikes):
            res[f"spikes_per_sample_l{i + 1}"] = s / n
        for i, f in enumerate(self.fired):
            res[f"silent_neurons_pct_l{i + 1}"] = 100.0 * float((~f).sum()) / max(len(f), 1)
        res["silent_labels_pct"] = 100.0 * self.silent_labels / n
        for ms in LATENCY_MS:
            res[f"label_spike_share_{ms}ms"] = self.share[ms] / n
        res["decision_time_ms"] = 1000.0 * self.dec_sum / self.dec_n if self.dec_n else math.nan
        return res
