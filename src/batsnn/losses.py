"""BATS losses on output spike trains (model.md section 3).

Each loss is a function of ``(times, counts, ...)`` returning a scalar whose ``backward()``
delivers exactly the BATS errors to the spike times, plus a thin ``nn.Module`` wrapper and
the matching prediction. ``reduction`` is ``"mean"`` (over the batch, the default, as BATS
averages its gradients over the batch) or ``"sum"``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from batsnn.params import TAU_S_RANGE, real_number
from batsnn.spikes import check_counts, check_tensor

__all__ = [
    "SpikeCountClassLoss", "SpikeCountLoss", "SpikeTimeLoss", "TTFSCrossEntropyLoss",
    "count_predict", "spike_count_class_loss", "spike_count_loss", "spike_time_loss",
    "ttfs_cross_entropy", "ttfs_predict",
]


def _check_reduction(reduction) -> None:
    """``reduction`` is ``"mean"`` or ``"sum"``."""
    if not isinstance(reduction, str) or reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _tensor(name: str, value, *, floating: bool = False, like: torch.Tensor | None = None
            ) -> None:
    """``value`` is a torch.Tensor (of a float dtype with ``floating``; on the device of
    ``like``, the loss's ``times``, when given)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if like is not None and value.device != like.device:
        raise ValueError(f"{name} is on {value.device} but times is on {like.device}")
    if floating and value.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {value.dtype}")


def _check_outputs(times: torch.Tensor, counts: torch.Tensor) -> None:
    """``times (B, N, S)`` float and ``counts (B, N)`` integer, counts in ``[0, S]`` and
    equal to the finite entries of ``times`` per neuron (values read on the CPU only: on a
    GPU that would cost a host synchronisation per step)."""
    check_tensor("times", times)
    _tensor("counts", counts, like=times)
    if counts.dtype.is_floating_point or counts.dtype.is_complex or counts.dtype == torch.bool:
        raise TypeError(f"counts must be an integer tensor, got {counts.dtype}")
    if counts.shape != times.shape[:2]:
        raise ValueError(f"times must be (B, N, S) and counts (B, N); got {tuple(times.shape)} "
                         f"and {tuple(counts.shape)}")
    if counts.numel() and counts.device.type == "cpu":
        lo, hi = int(counts.min()), int(counts.max())
        if lo < 0 or hi > times.shape[2]:
            raise ValueError(f"counts must lie in [0, S={times.shape[2]}] (spikes per neuron), "
                             f"got values in [{lo}, {hi}]")
    check_counts(counts, times)


def _squared_error_bound(dtype: torch.dtype, terms: int) -> float:
    """The largest value whose squared error, summed over ``terms`` terms, stays finite in
    ``dtype``: ``sqrt(finfo(dtype).max / terms)``."""
    return math.sqrt(torch.finfo(dtype).max / max(terms, 1))


def _check_bound(name: str, values: torch.Tensor, bound: float, dtype: torch.dtype,
                 terms: int) -> None:
    """Raise if the CPU tensor ``values`` holds a finite value above ``bound`` (see
    :func:`_squared_error_bound`), naming ``name``, the value and ``dtype``."""
    if not values.numel() or values.device.type != "cpu":
        return
    v = values.detach().to(torch.float64)
    bad = torch.isfinite(v) & (v.abs() > bound)
    if bool(bad.any()):
        idx = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{name}{list(idx)} = {values[idx].item()!r} is beyond {bound:.3g}, the "
                         f"largest value whose squared error over {terms} terms per sample stays "
                         f"finite in {str(dtype).removeprefix('torch.')} (the dtype of times)")


def _check_values(name: str, values: torch.Tensor, *, allow_inf: bool) -> None:
    """The float tensor ``values`` holds no NaN, no negative value and (unless
    ``allow_inf``) no infinity; read on the CPU only (a host synchronisation on a GPU)."""
    if not values.numel() or values.device.type != "cpu":
        return
    bad = torch.isnan(values) | (values < 0)
    if not allow_inf:
        bad |= torch.isinf(values)
    if bool(bad.any()):
        idx = tuple(torch.nonzero(bad)[0].tolist())
        what = "numbers >= 0 or +inf" if allow_inf else "finite numbers >= 0"
        raise ValueError(f"{name} must be {what}, got {name}{list(idx)} = "
                         f"{values[idx].item()!r}")


def _check_labels(labels: torch.Tensor, n_classes: int, times: torch.Tensor) -> None:
    """``labels`` a ``(B,)`` integer tensor on ``times``' device, in ``[0, n_classes)``
    (the values read on the CPU only)."""
    _tensor("labels", labels, like=times)
    if labels.dim() != 1 or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    # value range checked on the CPU only: on a GPU it would cost a host synchronisation
    # per step. There an out-of-range or negative label trips a device-side assert in the
    # scatter that builds the targets (CUDA error: device-side assert triggered), after which
    # the process's CUDA context is unusable; batsnn's dataset loader checks every label at
    # load time (batsnn.experiments.data.check_dataset) so that training never gets there.
    if labels.numel() and labels.device.type == "cpu" and (
            int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")


class _CountLossFunction(torch.autograd.Function):
    """``L = 1/2 sum_n (target_n - count_n)^2``; ``dL/dt := target_n - count_n`` per spike."""

    @staticmethod
    def forward(ctx, times, counts, targets):
        diff = targets.to(times.dtype) - counts.to(times.dtype)
        ctx.save_for_backward(diff, counts)
        ctx.s = times.shape[2]
        return 0.5 * (diff * diff).sum(1)

    @staticmethod
    def backward(ctx, grad):
        diff, counts = ctx.saved_tensors
        slots = torch.arange(ctx.s, device=counts.device)
        emitted = slots.view(1, 1, -1) < counts.unsqueeze(-1)
        err = (diff * grad.unsqueeze(1)).unsqueeze(-1) * emitted
        return err, None, None


def spike_count_loss(times: torch.Tensor, counts: torch.Tensor, targets: torch.Tensor, *,
                     reduction: str = "mean") -> torch.Tensor:
    """Spike-count loss with given targets: ``1/2 sum_n (target_n - count_n)^2`` per sample.

    A count has no derivative; as in BATS every emitted spike of neuron ``n`` receives the
    error ``dL/dt = target_n - count_n`` (a spike counts as ``d count / dt = -1``), divided
    by ``B`` under ``reduction="mean"``.

    Args:
        times: ``(B, N, S)`` output spike times.
        counts: ``(B, N)`` integer spike counts in ``[0, S]``, the finite entries of
            ``times`` per neuron.
        targets: ``(B, N)`` target counts, finite, >= 0 and at most ``sqrt(finfo(dtype).max
            / N)`` for ``times``' dtype (so that the squared error stays finite).
        reduction: ``"mean"`` (over the batch) or ``"sum"``.

    Raises:
        TypeError, ValueError: naming the argument and the value (the values of counts and
        targets are read on the CPU only: on a GPU that would synchronise the host).
    """
    _check_reduction(reduction)
    _check_outputs(times, counts)
    _tensor("targets", targets, like=times)
    if targets.shape != counts.shape:
        raise ValueError(f"targets must have shape {tuple(counts.shape)}, got "
                         f"{tuple(targets.shape)}")
    if targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"targets must be a real tensor, got {targets.dtype}")
    if targets.is_floating_point():
        _check_values("targets", targets, allow_inf=False)
    elif targets.numel() and targets.device.type == "cpu" and int(targets.min()) < 0:
        raise ValueError(f"targets must be finite numbers >= 0, got {int(targets.min())}")
    _check_bound("targets", targets, _squared_error_bound(times.dtype, counts.shape[1]),
                 times.dtype, counts.shape[1])
    return _reduce(_CountLossFunction.apply(times, counts, targets), reduction)


def count_targets(labels: torch.Tensor, n_classes: int, target_true: float,
                  target_false: float, dtype=torch.float32) -> torch.Tensor:
    """``(B, n_classes)`` targets: ``target_true`` at the label, ``target_false`` elsewhere."""
    t = torch.full((labels.shape[0], n_classes), float(target_false), dtype=dtype,
                   device=labels.device)
    t.scatter_(1, labels.long().unsqueeze(1), float(target_true))
    return t


def spike_count_class_loss(times: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor, *,
                           target_true: float = 15.0, target_false: float = 3.0,
                           reduction: str = "mean") -> torch.Tensor:
    """Spike-count classification loss (BATS): targets ``target_true`` for the label neuron
    and ``target_false`` for the others; see :func:`spike_count_loss`.

    Args:
        times: ``(B, C, S)`` output spike times.
        counts: ``(B, C)`` integer spike counts, the finite entries of ``times`` per neuron.
        labels: ``(B,)`` integer class of each sample, in ``[0, C)``.
        target_true, target_false: finite numbers >= 0, at most ``sqrt(finfo(dtype).max /
            C)`` for ``times``' dtype (so that the squared error stays finite).
        reduction: ``"mean"`` (over the batch) or ``"sum"``.

    Raises:
        TypeError, ValueError: naming the argument and the value, as for
        :func:`spike_count_loss`.
    """
    target_true = real_number("target_true", target_true, allow_zero=True)
    target_false = real_number("target_false", target_false, allow_zero=True)
    _check_reduction(reduction)
    _check_outputs(times, counts)
    bound = _squared_error_bound(times.dtype, counts.shape[1])
    for name, value in (("target_true", target_true), ("target_false", target_false)):
        if value > bound:
            raise ValueError(f"{name}={value!r} is beyond {bound:.3g}, the largest target whose "
                             f"squared error over {counts.shape[1]} neurons stays finite in "
                             f"{str(times.dtype).removeprefix('torch.')} (the dtype of times)")
    _check_labels(labels, counts.shape[1], times)
    targets = count_targets(labels, counts.shape[1], target_true, target_false, times.dtype)
    # The targets are built here, finite and within the bound checked above.
    return _reduce(_CountLossFunction.apply(times, counts, targets), reduction)


def count_predict(counts: torch.Tensor) -> torch.Tensor:
    """Prediction of count models: the neuron with the most spikes (ties: lowest index).

    ``counts`` ``(B, C)`` with ``C >= 1``; returns ``(B,)`` int64."""
    _tensor("counts", counts)
    if counts.dim() != 2 or counts.shape[1] < 1:
        raise ValueError(f"counts must be (B, C) with C >= 1, got shape {tuple(counts.shape)}")
    return counts.argmax(1)


def spike_time_loss(times: torch.Tensor, target_times: torch.Tensor, *,
                    reduction: str = "mean") -> torch.Tensor:
    """Squared error between spike times and target times, over pairs where both exist.

    ``L = 1/2 sum (t - target)^2`` over the slots where both ``times`` and ``target_times``
    are finite (so ``dL/dt = t - target`` there and 0 elsewhere).

    Args:
        times: ``(B, N, S)`` spike times.
        target_times: same shape, times >= 0, ``+inf`` where no target (NaN and negative
            values are refused on the CPU, and finite ones above ``sqrt(finfo(dtype).max /
            (N * S))`` for ``times``' dtype, whose squared error would overflow).
        reduction: ``"mean"`` (over the batch) or ``"sum"``.
    """
    _check_reduction(reduction)
    check_tensor("times", times)
    _tensor("target_times", target_times, floating=True, like=times)
    if times.shape != target_times.shape:
        raise ValueError(f"target_times must have shape {tuple(times.shape)}, got "
                         f"{tuple(target_times.shape)}")
    _check_values("target_times", target_times, allow_inf=True)
    terms = math.prod(times.shape[1:])
    _check_bound("target_times", target_times, _squared_error_bound(times.dtype, terms),
                 times.dtype, terms)
    target_times = target_times.to(times.dtype)
    both = torch.isfinite(times) & torch.isfinite(target_times)
    diff = torch.where(both, times - torch.where(both, target_times, times), 0.0)
    return _reduce(0.5 * (diff * diff).flatten(1).sum(1), reduction)


class _TTFSCrossEntropyFunction(torch.autograd.Function):
    """Per-sample TTFS cross-entropy: the value with silent neurons at ``t_max``, the
    gradient with silent neurons at ``+inf`` (probability 0), as BATS."""

    @staticmethod
    def forward(ctx, first, labels, tau_loss, t_max):
        silent = torch.isinf(first)
        all_silent = silent.all(1, keepdim=True)
        onehot = torch.zeros_like(first).scatter_(1, labels.long().unsqueeze(1), 1.0)
        # gradient: softmax over the true first spike times (a silent neuron has p = 0);
        # an all-silent sample gets no gradient
        p = torch.softmax(torch.where(all_silent, torch.zeros_like(first), -first / tau_loss), 1)
        ctx.save_for_backward(torch.where(all_silent, torch.zeros_like(p), (onehot - p) / tau_loss))
        # value: a silent neuron's first spike is taken at the horizon t_max (finite when
        # t_max is); an all-silent sample is then uniform, log(C), as its gradient-free value
        shown = torch.where(silent, torch.full_like(first, t_max), first)
        logits = torch.where(all_silent, torch.zeros_like(first), -shown / tau_loss)
        return -torch.log_softmax(logits, 1).gather(1, labels.long().unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        (err,) = ctx.saved_tensors
        return err * grad.unsqueeze(1), None, None, None


def ttfs_cross_entropy(times: torch.Tensor, labels: torch.Tensor, *, tau_loss: float = 0.005,
                       t_max: float = math.inf, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy on first spike times (single-spike models).

    ``L = -log softmax(-t_first / tau_loss)[label]`` per sample, so ``dL/dt_first =
    (onehot - softmax) / tau_loss`` (divided by ``B`` under ``reduction="mean"``).

    Silent neurons (``t_first = +inf``): the gradient is BATS's, computed with ``t = +inf``,
    i.e. probability 0 (a silent label neuron receives ``1 / tau_loss``, a silent other
    neuron 0). The loss VALUE takes a silent neuron's first spike at the simulation horizon
    ``t_max`` instead, so that it stays finite when the label neuron is silent (with the
    default ``t_max = inf`` the value is ``+inf`` then). A sample whose output neurons are all
    silent has the value ``log C`` and no gradient.

    Args:
        times: ``(B, C, S)`` output spike times in seconds (only ``times[..., 0]`` is used).
        labels: ``(B,)`` int class labels.
        tau_loss: temperature in seconds, in ``[1e-9, 1e6]`` (the range of ``tau_s``,
            docs/model.md section 7); ``first / tau_loss`` must be finite in ``times``'
            dtype (checked on the CPU).
        t_max: the output layer's simulation horizon in seconds (> 0, may be ``inf``): the
            first-spike time assigned to silent neurons in the value.
        reduction: ``"mean"`` or ``"sum"`` over the batch.

    Returns:
        a scalar tensor of ``times``'s dtype.
    """
    check_tensor("times", times)
    if times.shape[2] < 1:
        raise ValueError(f"times must have at least one spike slot, got shape "
                         f"{tuple(times.shape)}")
    tau_loss = real_number("tau_loss", tau_loss, supported=TAU_S_RANGE)
    if (isinstance(t_max, bool) or not isinstance(t_max, numbers.Real)
            or not float(t_max) > 0):
        raise ValueError(f"t_max must be a number > 0 (inf allowed), got {t_max!r}")
    _check_reduction(reduction)
    _check_labels(labels, times.shape[1], times)
    first = times[..., 0]
    if first.numel() and first.device.type == "cpu":
        finite = first.detach()[torch.isfinite(first.detach())]
        top = float(finite.abs().max()) if finite.numel() else 0.0
        if top / tau_loss > torch.finfo(times.dtype).max:
            raise ValueError(f"times holds a first spike time {top!r} s that is more than "
                             f"{torch.finfo(times.dtype).max:.3g} tau_loss={tau_loss!r} s: "
                             f"t / tau_loss overflows {str(times.dtype).removeprefix('torch.')}")
    return _reduce(_TTFSCrossEntropyFunction.apply(first, labels, float(tau_loss),
                                                   float(t_max)), reduction)


def ttfs_predict(times: torch.Tensor) -> torch.Tensor:
    """Prediction of TTFS models: the neuron with the earliest first spike.

    ``times`` ``(B, C, S)`` with ``C, S >= 1``; returns ``(B,)`` int64."""
    check_tensor("times", times)
    if times.shape[1] < 1 or times.shape[2] < 1:
        raise ValueError(f"times must be (B, C, S) with C, S >= 1, got shape "
                         f"{tuple(times.shape)}")
    return times[..., 0].argmin(1)


class SpikeCountClassLoss(nn.Module):
    """Module form of :func:`spike_count_class_loss`."""

    def __init__(self, target_true: float = 15.0, target_false: float = 3.0,
                 reduction: str = "mean"):
        super().__init__()
        self.target_true, self.target_false, self.reduction = target_true, target_false, reduction

    def forward(self, times, counts, labels):
        return spike_count_class_loss(times, counts, labels, target_true=self.target_true,
                                      target_false=self.target_false, reduction=self.reduction)


class SpikeCountLoss(nn.Module):
    """Module form of :func:`spike_count_loss`."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, times, counts, targets):
        return spike_count_loss(times, counts, targets, reduction=self.reduction)


class SpikeTimeLoss(nn.Module):
    """Module form of :func:`spike_time_loss`."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, times, target_times):
        return spike_time_loss(times, target_times, reduction=self.reduction)


class TTFSCrossEntropyLoss(nn.Module):
    """Module form of :func:`ttfs_cross_entropy`."""

    def __init__(self, tau_loss: float = 0.005, t_max: float = math.inf,
                 reduction: str = "mean"):
        super().__init__()
        self.tau_loss, self.t_max, self.reduction = tau_loss, t_max, reduction

    def forward(self, times, labels):
        return ttfs_cross_entropy(times, labels, tau_loss=self.tau_loss, t_max=self.t_max,
                                  reduction=self.reduction)

