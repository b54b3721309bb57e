"""Grouped training: many independent one-layer networks trained together as one wide
layer, each with its own gradient."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from batsnn.experiments.convergence.config import VARIANTS, ConvergenceConfig
from batsnn.experiments.convergence.data import experiment_data
from batsnn.functional import lif_linear
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict

__all__ = ["GroupedRun", "single_threaded", "train_grouped", "variant_loss",
           "variant_predict"]


class GroupedRun(NamedTuple):
    """Outcome of :func:`train_grouped` for ``n`` networks.

    Attributes:
        accuracy: ``(n, epochs + 1)`` accuracy (0 to 1) on the weights before each update
            and after the last one.
        weights: ``(n, C, N_in)`` final weights (zeros for diverged networks).
        diverged: ``(n,)`` bool, whether the weights became NaN or infinite.
        counts_initial, counts_final: ``(B, n, C)`` output spike counts before any update
            and after the last one.
        times_final: ``(B, n, C, K)`` output spike times after the last update.
    """

    accuracy: torch.Tensor
    weights: torch.Tensor
    diverged: torch.Tensor
    counts_initial: torch.Tensor
    counts_final: torch.Tensor
    times_final: torch.Tensor


def variant_loss(variant: str, times: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                 cfg: ConvergenceConfig, *, reduction: str = "mean") -> torch.Tensor:
    """The training loss of ``variant`` on outputs ``times (B, C, K)``, ``counts (B, C)``."""
    if variant == "multi":
        return spike_count_class_loss(times, counts, labels, target_true=cfg.target_true,
                                      target_false=cfg.target_false, reduction=reduction)
    return ttfs_cross_entropy(times, labels, tau_loss=cfg.tau_loss, reduction=reduction)


def variant_predict(variant: str, times: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(B,)`` predicted classes: most spikes (``multi``) or earliest spike (``single``)."""
    return count_predict(counts) if variant == "multi" else ttfs_predict(times)


def train_grouped(weights: torch.Tensor, variant: str, cfg: ConvergenceConfig,
                  inputs: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> GroupedRun:
    """Train ``n`` independent one-layer networks together as one wide layer.

    The stacked weight ``(n * C, N_in)`` runs through :func:`batsnn.lif_linear` on the shared
    inputs; the outputs ``(B, n * C, K)`` are grouped per network ``(B, n, C, K)`` and the
    loss is the sum over networks of each network's loss averaged over the ``B`` samples,
    so the gradient of each network's rows is that network's own gradient, and
    ``torch.optim.SGD`` (lr ``cfg.lr``) on the stacked weight steps each network as if it
    were trained alone. A network whose weights become NaN or infinite after a step is
    marked diverged: its weights are set to 0 (a silent network, no gradient) and its
    accuracy counts as 0 from that measurement on.

    Args:
        weights: ``(n, C, N_in)`` initial weights (not modified).
        variant: ``"multi"`` or ``"single"``.
        cfg: the loss, neuron and optimiser settings (``epochs``, ``lr``, ``dt``, ...).
        inputs: ``(B, N_in, S)`` spike times in s (default: :func:`experiment_data`).
        labels: ``(B,)`` int labels in ``[0, C)`` (default: :func:`experiment_data`).

    Returns:
        :class:`GroupedRun` with ``accuracy (n, epochs + 1)``, the final weights and the
        diverged mask.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(weights, torch.Tensor) or weights.dim() != 3:
        raise ValueError(f"weights must be a (n, C, N_in) tensor, got "
                         f"{getattr(weights, 'shape', type(weights).__name__)}")
    if inputs is None or labels is None:
        x, y = experiment_data(cfg.dt, weights.dtype, weights.device)
        inputs = x if inputs is None else inputs
        labels = y if labels is None else labels
    n, c, n_in = weights.shape
    b = inputs.shape[0]
    params = cfg.params(variant)
    k = params.max_spikes
    w = weights.detach().reshape(n * c, n_in).clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=cfg.lr)
    rows_labels = labels.repeat_interleave(n)  # row (s, i) of the (B * n, C) view
    accuracy = torch.zeros((n, cfg.epochs + 1), dtype=torch.float64, device=weights.device)
    diverged = torch.zeros(n, dtype=torch.bool, device=weights.device)
    for epoch in range(cfg.epochs + 1):
        last = epoch == cfg.epochs
        with torch.set_grad_enabled(not last):
            out = lif_linear(inputs, w, params=params)
        times = out.times.reshape(b * n, c, k)
        counts = out.counts.reshape(b * n, c)
        pred = variant_predict(variant, times.detach(), counts).reshape(b, n)
        acc = (pred == labels.unsqueeze(1)).to(torch.float64).mean(0)
        accuracy[:, epoch] = torch.where(diverged, 0.0, acc)
        if epoch == 0:
            counts_initial = counts.detach().reshape(b, n, c).clone()
        if last:
            break
        loss = variant_loss(variant, times, counts, rows_labels, cfg, reduction="sum") / b
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            per_net = w.view(n, c * n_in)
            bad = ~torch.isfinite(per_net).all(1)
            if bool(bad.any()):
                diverged |= bad
                per_net[diverged] = 0.0
    return GroupedRun(accuracy, w.detach().reshape(n, c, n_in).clone(), diverged,
                      counts_initial, counts.detach().reshape(b, n, c).clone(),
                      times.detach().reshape(b, n, c, k).clone())



@contextlib.contextmanager
def single_threaded():
    """Run the CPU kernels on one thread (restored afterwards).

    The layers of this experiment are tiny (a few thousand neurons, 4 input spikes): a
    parallel kernel spends more time waking its threads than computing, and far more on a
    loaded machine, where each call waits for a free core. One thread also fixes the order in
    which the backward kernel sums its per-thread weight gradients, so the result does not
    depend on the machine's core count.
    """
    import numba

    before_numba, before_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before_numba)
        torch.set_num_threads(before_torch)

