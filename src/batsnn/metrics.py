"""Evaluation metrics and their names: accuracy, sparsity and latency (model.md section 6).

All functions take spike trains in the library's convention: times ``(B, *neurons, S)``
ascending with ``+inf`` padding and counts ``(B, *neurons)``.

The metric schema is defined here once. Every table batsnn writes (``metrics.csv``,
``summary.json``, ``sweep.csv``) names its columns with these constants and functions:

=============================  ==============================================================
``EPOCH``                      epoch number (1-based)
``TRAIN_LOSS``/``TEST_LOSS``   mean loss per sample
``TRAIN_ACCURACY``/...         accuracy as a fraction in [0, 1]
``layer_key(SPIKES_PER_SAMPLE, l)``   spikes per test sample of layer ``l`` (1-based)
``layer_key(SILENT_NEURONS_PCT, l)``  % of layer ``l``'s neurons silent on the whole test set
``SILENT_LABELS_PCT``          % of test samples whose label neuron never spikes
``label_share_key(ms)``        mean share of the label neuron's target spikes emitted by
                               ``ms`` milliseconds, for ``ms`` in :data:`LATENCY_MS`
``DECISION_TIME_MS``           mean decision time (ms) over samples with output spikes
``readout_accuracy_key(ms)``   accuracy when the output is read at ``ms`` milliseconds (the
                               prediction from the output spikes emitted by then; a sample
                               without output spikes by then counts as wrong), for ``ms``
                               in :data:`READOUT_MS`
``LR``                         learning rate after the epoch's scheduler step
``TRAIN_SECONDS``              wall time of the epoch's training pass (s)
``EPOCH_SECONDS``              wall time of the epoch including evaluation (s)
``REVIVED_NEURONS``            silent neurons bumped in the epoch's training steps, counted
                               once per (step, layer, neuron) (runs with ``revive`` only,
                               :mod:`batsnn.experiments.training.revive`)
``BEST_TEST_ACCURACY``         best test accuracy so far (summary only)
``EPOCHS_COMPLETED``           epochs done (summary only)
=============================  ==============================================================

The discretization-error study compares two spike trains of a layer
(:func:`spike_train_error`), keys ``MSE_MS2``, ``RMSE_MS``, ``MATCHED_SPIKES``,
``COUNT_CHANGED_SHARE``, ``SPIKES_CONTINUOUS``, ``SPIKES_DISCRETE``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import torch

from batsnn.losses import count_predict, ttfs_predict
from batsnn.params import real_number
from batsnn.spikes import SpikeTrains, check_counts, check_spike_times, check_tensor

__all__ = [
    "ACCURACY", "BEST_TEST_ACCURACY", "DECISION_TIME_MS", "EPOCH", "EPOCHS_COMPLETED",
    "EPOCH_SECONDS", "LABEL_SHARE_KEYS", "LATENCY_MS", "LOSS", "LR", "SILENT_LABELS_PCT",
    "SILENT_NEURONS_PCT", "SPIKES_PER_SAMPLE", "TEST_ACCURACY", "TEST_LOSS", "TRAIN_ACCURACY",
    "TRAIN_LOSS", "TRAIN_SECONDS", "MSE_MS2", "RMSE_MS", "MATCHED_SPIKES", "COUNT_CHANGED_SHARE",
    "SPIKES_CONTINUOUS", "SPIKES_DISCRETE", "READOUT_MS", "READOUT_KEYS", "EvalStats",
    "REVIVED_NEURONS",
    "decision_times", "label_share_key", "label_spike_share", "layer_activity", "layer_key",
    "layer_keys", "layer_of", "prediction_by", "readout_accuracy_key", "spike_train_error",
]

#: times (ms) at which the label neuron's share of target spikes is reported
LATENCY_MS = (25, 50, 100, 200)
#: times (ms) at which the output is read for :func:`readout_accuracy_key`
READOUT_MS = (50, 100, 150, 200)

LOSS = "loss"
ACCURACY = "accuracy"
EPOCH = "epoch"
TRAIN_LOSS = "train_" + LOSS
TRAIN_ACCURACY = "train_" + ACCURACY
TEST_LOSS = "test_" + LOSS
TEST_ACCURACY = "test_" + ACCURACY
BEST_TEST_ACCURACY = "best_" + TEST_ACCURACY
EPOCHS_COMPLETED = "epochs_completed"
LR = "lr"
TRAIN_SECONDS = "train_seconds"
EPOCH_SECONDS = "epoch_seconds"
REVIVED_NEURONS = "revived_neurons"
SILENT_LABELS_PCT = "silent_labels_pct"
DECISION_TIME_MS = "decision_time_ms"
#: per-layer metric families: the column of layer ``l`` is ``layer_key(family, l)``
SPIKES_PER_SAMPLE = "spikes_per_sample"
SILENT_NEURONS_PCT = "silent_neurons_pct"

_LAYER_SUFFIX = re.compile(r"_l(\d+)$")


def layer_key(family: str, layer: int) -> str:
    """Column name of a per-layer metric: ``layer_key(SPIKES_PER_SAMPLE, 2)`` is
    ``"spikes_per_sample_l2"``. ``layer`` counts from 1 (the first spiking layer)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
        raise ValueError(f"layer must be an int >= 1, got {layer!r}")
    return f"{family}_l{layer}"


def layer_of(key: str) -> int:
    """The layer number (from 1) of a per-layer column name such as ``spikes_per_sample_l2``
    (a trailing suffix such as ``_mean`` is not allowed: strip it first)."""
    m = _LAYER_SUFFIX.search(key)
    if m is None:
        raise ValueError(f"{key!r} is not a per-layer metric name (expected '<family>_l<n>')")
    return int(m.group(1))


def layer_keys(keys: Iterable[str], family: str) -> list[str]:
    """The per-layer columns of ``family`` among ``keys`` (e.g. a metrics row), ordered by
    layer number (so ``l10`` comes after ``l9``)."""
    pat = re.compile(re.escape(family) + r"_l(\d+)$")
    found = [(int(m.group(1)), k) for k in keys if (m := pat.match(k))]
    return [k for _, k in sorted(found)]


def label_share_key(ms: int) -> str:
    """Column name of the label-spike share by ``ms`` milliseconds:
    ``"label_spike_share_50ms"``."""
    return f"label_spike_share_{ms}ms"


#: the label-share columns, one per entry of :data:`LATENCY_MS`
LABEL_SHARE_KEYS = tuple(label_share_key(ms) for ms in LATENCY_MS)


def label_spike_share(times: torch.Tensor, labels: torch.Tensor, target: float,
                      t: float) -> torch.Tensor:
    """Per sample: the label neuron's spikes emitted at or before time ``t`` (s), divided by
    ``target`` and capped at 1.

    Args:
        times: ``(B, C, S)`` output spike times in seconds.
        labels: ``(B,)`` int class labels.
        target: the label neuron's target number of spikes (1 for single-spike models).
        t: time in seconds.

    Returns:
        ``(B,)`` float64 shares in ``[0, 1]``.
    """
    check_tensor("times", times)
    if (not isinstance(labels, torch.Tensor) or labels.shape != times.shape[:1]
            or labels.dtype.is_floating_point or labels.dtype == torch.bool):
        got = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
               else type(labels).__name__)
        raise TypeError(f"labels must be a ({times.shape[0]},) integer tensor, got {got}")
    target = real_number("target", target)
    t = real_number("t", t, allow_zero=True, allow_inf=True)
    lab = times[torch.arange(len(labels), device=times.device), labels.long()]
    return ((lab <= t).sum(1).to(torch.float64) / float(target)).clamp(max=1.0)


def readout_accuracy_key(ms: int) -> str:
    """Column name of the accuracy when the output is read at ``ms`` milliseconds:
    ``"accuracy_by_100ms"``."""
    return f"accuracy_by_{ms}ms"


#: the read-out accuracy columns, one per entry of :data:`READOUT_MS`
READOUT_KEYS = tuple(readout_accuracy_key(ms) for ms in READOUT_MS)


def prediction_by(times: torch.Tensor, t: float, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The prediction made from the output spikes emitted at or before time ``t`` (s):
    ``(pred, decided)``, both ``(B,)``; ``decided`` is false for samples without an output
    spike by then (their ``pred`` means nothing).

    ``mode="count"``: the neuron with most spikes by ``t`` (ties: lowest index, as
    :func:`batsnn.losses.count_predict`); ``mode="ttfs"``: the neuron with the earliest
    first spike (ties: lowest index, as :func:`batsnn.losses.ttfs_predict`). At ``t`` past
    every spike ``pred`` is the final prediction of a sample with output spikes; a sample
    without any is undecided here, while the final read-out (argmax of zero counts) names
    neuron 0 for it, so the read-out accuracy at ``t_max`` can be lower than the test
    accuracy by the silent samples of label 0.

    Args:
        times: ``(B, C, S)`` output spike times in seconds.
        t: the read-out time in seconds.
        mode: ``"count"`` or ``"ttfs"``.
    """
    if mode not in ("count", "ttfs"):
        raise ValueError(f"mode must be 'count' or 'ttfs', got {mode!r}")
    check_tensor("times", times)
    t = real_number("t", t, allow_zero=True, allow_inf=True)
    if mode == "count":
        counts = (times <= t).sum(-1)
        return count_predict(counts), counts.sum(1) > 0
    return ttfs_predict(times), times[..., 0].min(1).values <= t


def decision_times(times: torch.Tensor, counts: torch.Tensor, mode: str) -> torch.Tensor:
    """Per sample: the earliest time after which the prediction made from the output spikes
    emitted so far no longer changes.

    ``mode="count"``: the prediction at time ``t`` is the neuron with most spikes at or
    before ``t`` (ties: lowest index, as :func:`batsnn.losses.count_predict`). Spikes at the
    same time count together: the prediction is only looked at between distinct spike
    times. The decision time is the first spike time from which the prediction equals the
    final prediction for good (at the earliest, the first output spike).
    ``mode="ttfs"``: the earliest first spike decides, so the decision time is the first
    output spike.

    Args:
        times: ``(B, C, S)`` output spike times in seconds.
        counts: ``(B, C)`` spike counts (unused by ``"ttfs"``).
        mode: ``"count"`` or ``"ttfs"``.

    Returns:
        ``(B,)`` float64 seconds, NaN for samples without output spikes.
    """
    if mode not in ("count", "ttfs"):
        raise ValueError(f"mode must be 'count' or 'ttfs', got {mode!r}")
    check_tensor("times", times)
    t = times.detach().to(torch.float64)
    n_batch, n_cls, _ = t.shape
    if n_batch == 0:
        return torch.zeros(0, dtype=torch.float64, device=t.device)
    if mode == "ttfs":
        first = t[..., 0].min(1).values
        return torch.where(torch.isinf(first), torch.full_like(first, math.nan), first)
    flat = t.reshape(n_batch, -1)
    order = flat.argsort(dim=1, stable=True)
    ev_t = flat.gather(1, order)  # (B, E) every spike, in time order; +inf last
    ev_n = torch.div(order, t.shape[2], rounding_mode="floor")
    finite = torch.isfinite(ev_t)
    onehot = torch.nn.functional.one_hot(ev_n, n_cls) * finite.unsqueeze(-1)
    cum = onehot.cumsum(1)  # (B, E, C): counts after each event
    pred = cum.argmax(2)  # argmax takes the first maximum: lowest index on ties
    n_ev = finite.sum(1)
    final = pred.gather(1, (n_ev - 1).clamp(min=0).unsqueeze(1))
    # the prediction is observable only after the last spike of each distinct time
    nxt = torch.cat([ev_t[:, 1:], torch.full_like(ev_t[:, :1], math.inf)], 1)
    group_end = finite & (nxt != ev_t)
    differs = (pred != final) & group_end
    idx = torch.arange(flat.shape[1], device=t.device).expand_as(pred)
    last_diff = torch.where(differs, idx, torch.full_like(idx, -1)).max(1).values
    when = ev_t.gather(1, (last_diff + 1).clamp(max=flat.shape[1] - 1).unsqueeze(1)).squeeze(1)
    return torch.where(n_ev > 0, when, torch.full_like(when, math.nan))


def layer_activity(counts: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One batch of a layer: its total number of spikes and which neurons spiked at least
    once.

    Args:
        counts: ``(B, *neurons)`` integer spike counts, >= 0 (the values read on the CPU
            only: on a GPU that would synchronise the host).

    Returns:
        ``(total_spikes, fired)`` with ``fired`` a CPU bool tensor of shape ``(prod(neurons),)``.

    Raises:
        TypeError: ``counts`` not a tensor of at least one axis, or not of an integer dtype.
        ValueError: a negative count (CPU tensors).
    """
    if not isinstance(counts, torch.Tensor) or counts.dim() < 1:
        got = (f"shape {tuple(counts.shape)}" if isinstance(counts, torch.Tensor)
               else type(counts).__name__)
        raise TypeError(f"counts must be a (B, *neurons) tensor, got {got}")
    if counts.dtype.is_floating_point or counts.dtype.is_complex or counts.dtype == torch.bool:
        raise TypeError(f"counts must be an integer tensor, got {counts.dtype}")
    if counts.numel() and counts.device.type == "cpu" and int(counts.min()) < 0:
        idx = tuple(torch.nonzero(counts < 0)[0].tolist())
        raise ValueError(f"counts must be >= 0 (spikes per neuron), got counts{list(idx)} = "
                         f"{int(counts[idx])}")
    return float(counts.sum()), (counts.reshape(counts.shape[0], -1) > 0).any(0).cpu()


class EvalStats:
    """Accumulates the evaluation metrics of the schema above over batches.

    Args:
        layer_sizes: number of neurons of each spiking layer, or ``None`` to take them from
            the first batch (any layer shape: neurons are counted flattened).
        mode: ``"count"`` or ``"ttfs"`` (how predictions and decision times are made).
        target: the label neuron's target number of spikes (1 for TTFS).
    """

    def __init__(self, layer_sizes: Sequence[int] | None, mode: str, target: float):
        if mode not in ("count", "ttfs"):
            raise ValueError(f"mode must be 'count' or 'ttfs', got {mode!r}")
        target = real_number("target", target)
        self.mode, self.target = mode, target
        self.n = 0
        self.correct = 0
        self.loss_sum = 0.0
        self.spikes: list[float] | None = None
        self.fired: list[torch.Tensor] | None = None
        if layer_sizes is not None:
            self._init_layers(list(layer_sizes))
        self.silent_labels = 0
        self.share = {ms: 0.0 for ms in LATENCY_MS}
        self.dec_sum = 0.0
        self.dec_n = 0
        self.readout = {ms: 0 for ms in READOUT_MS}

    def _init_layers(self, sizes: list[int]) -> None:
        self.spikes = [0.0] * len(sizes)
        self.fired = [torch.zeros(s, dtype=torch.bool) for s in sizes]

    def update(self, outputs, labels: torch.Tensor, loss: float, pred: torch.Tensor) -> None:
        """Add one batch.

        Args:
            outputs: every spiking layer's :class:`~batsnn.spikes.SpikeTrains`, in order; the
                last is the output layer, times ``(B, C, S)``.
            labels: ``(B,)`` int labels.
            loss: the batch's mean loss per sample.
            pred: ``(B,)`` predicted classes.
        """
        b = len(labels)
        if self.spikes is None:
            self._init_layers([o.counts[0].numel() for o in outputs])
        if len(outputs) != len(self.spikes):
            raise ValueError(f"expected {len(self.spikes)} layers' outputs, got {len(outputs)}")
        self.n += b
        self.loss_sum += float(loss) * b
        self.correct += int((pred == labels).sum())
        for i, out in enumerate(outputs):
            total, fired = layer_activity(out.counts)
            self.spikes[i] += total
            self.fired[i] |= fired
        last = outputs[-1]
        lab_counts = last.counts[torch.arange(b, device=labels.device), labels]
        self.silent_labels += int((lab_counts == 0).sum())
        for ms in LATENCY_MS:
            self.share[ms] += float(label_spike_share(last.times, labels, self.target,
                                                      ms / 1000).sum())
        for ms in READOUT_MS:
            pred_t, decided = prediction_by(last.times, ms / 1000, self.mode)
            self.readout[ms] += int(((pred_t == labels) & decided).sum())
        dec = decision_times(last.times, last.counts, self.mode)
        ok = ~torch.isnan(dec)
        self.dec_sum += float(dec[ok].sum())
        self.dec_n += int(ok.sum())

    def result(self, prefix: str = "test_") -> dict:
        """The metrics as a flat dict keyed by the schema's names (``prefix`` goes before
        ``loss`` and ``accuracy``): accuracy as a fraction, times in ms, shares in [0, 1],
        silent neurons and labels in %."""
        n = max(self.n, 1)
        res = {prefix + LOSS: self.loss_sum / n, prefix + ACCURACY: self.correct / n}
        for i, s in enumerate(self.spikes or []):
            res[layer_key(SPIKES_PER_SAMPLE, i + 1)] = s / n
        for i, f in enumerate(self.fired or []):
            res[layer_key(SILENT_NEURONS_PCT, i + 1)] = 100.0 * float((~f).sum()) / max(len(f), 1)
        res[SILENT_LABELS_PCT] = 100.0 * self.silent_labels / n
        for ms in LATENCY_MS:
            res[label_share_key(ms)] = self.share[ms] / n
        res[DECISION_TIME_MS] = 1000.0 * self.dec_sum / self.dec_n if self.dec_n else math.nan
        for ms in READOUT_MS:
            res[readout_accuracy_key(ms)] = self.readout[ms] / n
        return res


# ----------------------------------------------------------------------------- discretization error

MSE_MS2 = "mse_ms2"
RMSE_MS = "rmse_ms"
MATCHED_SPIKES = "matched_spikes"
COUNT_CHANGED_SHARE = "count_changed_share"
SPIKES_CONTINUOUS = "spikes_per_sample_continuous"
SPIKES_DISCRETE = "spikes_per_sample_discrete"


def spike_train_error(cont, disc) -> dict:
    """Compare a layer's spike trains for the same inputs with and without a time step.

    The ``k``-th spike of a neuron is matched with its ``k``-th spike in the other train.

    Args:
        cont, disc: spike trains of the same shape, each a
            :class:`~batsnn.spikes.SpikeTrains` or a ``(times, counts)`` pair of tensors:
            times ``(B, *neurons, S)`` in seconds, counts ``(B, *neurons)`` integer, the
            finite entries of ``times`` per neuron (the values checked on the CPU).

    Returns:
        ``MSE_MS2``: mean squared difference (ms^2) over the slots where both spiked (NaN if
        none); ``RMSE_MS``: its square root (ms); ``MATCHED_SPIKES``: how many such slots;
        ``COUNT_CHANGED_SHARE``: share of (sample, neuron) pairs whose count differs;
        ``SPIKES_CONTINUOUS``/``SPIKES_DISCRETE``: spikes per sample of each.

    Raises:
        TypeError, ValueError: naming ``cont`` or ``disc`` and what is wrong with it.
    """
    cont, disc = _spike_trains("cont", cont), _spike_trains("disc", disc)
    if cont.times.shape != disc.times.shape:
        raise ValueError(f"spike trains differ in shape: {tuple(cont.times.shape)} and "
                         f"{tuple(disc.times.shape)}")
    tc, td = cont.times.double(), disc.times.double()
    both = torch.isfinite(tc) & torch.isfinite(td)
    diff = torch.where(both, tc - td, torch.zeros_like(tc)) * 1e3
    n_pairs = int(both.sum())
    mse = float((diff ** 2).sum()) / n_pairs if n_pairs else math.nan
    b = max(cont.counts.shape[0], 1)
    return {MSE_MS2: mse, RMSE_MS: math.sqrt(mse) if n_pairs else math.nan,
            MATCHED_SPIKES: n_pairs,
            COUNT_CHANGED_SHARE: float((cont.counts != disc.counts).double().mean()),
            SPIKES_CONTINUOUS: float(cont.counts.sum()) / b,
            SPIKES_DISCRETE: float(disc.counts.sum()) / b}


def _spike_trains(name: str, value) -> SpikeTrains:
    """``value`` (a SpikeTrains or a ``(times, counts)`` pair) as checked SpikeTrains."""
    if not isinstance(value, tuple) or len(value) != 2:
        got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
        raise TypeError(f"{name} must be SpikeTrains or a (times, counts) pair of tensors, got "
                        f"{got}")
    times, counts = value
    check_spike_times(f"{name} times", times)
    check_counts(counts, times, f"{name} counts")
    return SpikeTrains(times, counts)
