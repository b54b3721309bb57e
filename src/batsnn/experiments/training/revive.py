"""Reviving silent neurons during training ("weight bumping").

A neuron that never spikes gets no gradient from a spike-time or spike-count loss: BATS
gradients flow only through emitted spikes (model.md section 2), so once a neuron has fallen
silent for every input, nothing in the gradient brings it back. An output neuron in that state
is a class the network never predicts.

The remedy, after the "weight bumping" of Göltz et al. (2021, "Fast and energy-efficient
neuromorphic deep learning with first-spike times", Nature Machine Intelligence): after each
optimizer step, every covered neuron that emitted no spike for any sample of the step's batch
has all its input weights raised by a fixed amount ``bump``; a neuron that stays silent is
bumped again after every step until it spikes. Their published code bumps instead of taking
the gradient step, and only when a layer misses more than a set share of its spikes (the
first such layer; a neuron missing a spike for any sample of the batch), with a bump
(5e-4 for a threshold of 1 in their MNIST setting) doubled on consecutive bumps. The rule here
is a simpler form: it runs after the gradient step, bumps only neurons silent for the whole
batch, in every covered layer, by a fixed amount, so it holds no state between steps and a
resumed run continues exactly.

Which neurons are covered (:data:`REVIVE_MODES`): ``"output"``, the last layer's; ``"all"``,
those of every spiking layer: a dense layer's neurons, and a convolution's output channels
(a channel is silent when none of its positions spikes for any sample; all the channel's
kernel weights are raised). Pooling and reshaping layers have no neurons of their own.

Everything runs on the device without host synchronisation, so a CUDA graph can record it
(:class:`~batsnn.experiments.training.step.GraphedTrainStep`); the number of bumps of an
epoch is counted on the device and read once per epoch (:meth:`Reviver.epoch_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from batsnn import metrics as M
from batsnn.nn import LIFConv2d, LIFLinear, LIFRecurrent

__all__ = ["REVIVE_MODES", "Reviver", "bump_silent", "covered_layers", "silent_neurons",
           "spike_totals"]

#: which neurons the remedy covers: none, the output layer's, every spiking layer's
REVIVE_MODES = ("none", "output", "all")


def spike_totals(counts: torch.Tensor) -> torch.Tensor:
    """Spikes per neuron over a batch: ``counts`` summed over every axis but the first
    non-batch one (``(B, N)``: the N neurons of a dense layer; ``(B, C, H, W)``: the C
    channels of a convolution, all positions together); shape ``(N,)`` or ``(C,)``."""
    return counts.transpose(0, 1).reshape(counts.shape[1], -1).sum(1)


def silent_neurons(counts: torch.Tensor) -> torch.Tensor:
    """Which neurons (dense) or channels (convolution) emitted no spike for any sample of a
    batch: ``spike_totals(counts) == 0``, a bool tensor (:func:`spike_totals`)."""
    return spike_totals(counts) == 0


def bump_silent(weight: torch.Tensor, silent: torch.Tensor, bump: float) -> None:
    """Raise, in place, the input weights of the ``silent`` neurons by ``bump``: the rows
    ``weight[i]`` (a dense ``(N, M)`` weight, or a convolution's ``(C, C_in, kh, kw)``
    kernels) with ``silent[i]`` true; the others are left exactly as they are. Pure tensor
    arithmetic on ``weight``'s device (no host synchronisation)."""
    with torch.no_grad():
        weight.add_(silent.to(weight.dtype).view(-1, *([1] * (weight.dim() - 1))) * bump)


def covered_layers(model: torch.nn.Module, mode: str) -> list[torch.nn.Module]:
    """The spiking layers of ``model`` (:class:`~batsnn.nn.LIFLinear`,
    :class:`~batsnn.nn.LIFRecurrent` and :class:`~batsnn.nn.LIFConv2d`, in order) that
    ``mode`` covers: none, the last one (``"output"``) or all (``"all"``); a recurrent
    layer's bump goes to its input weights."""
    if mode not in REVIVE_MODES:
        raise ValueError(f"revive must be one of {', '.join(map(repr, REVIVE_MODES))}, "
                         f"got {mode!r}")
    spiking = (LIFLinear, LIFRecurrent, LIFConv2d)
    layers = [m for m in model.modules() if isinstance(m, spiking)]
    return {"none": [], "output": layers[-1:], "all": layers}[mode]


class Reviver:
    """The remedy on a model's training steps: forward hooks keep the spike counts of each
    covered layer's last training forward pass; :meth:`after_step` bumps the silent neurons.

    Args:
        model: the network trained (its :class:`~batsnn.nn.LIFLinear` and
            :class:`~batsnn.nn.LIFConv2d` layers are the candidates).
        mode: one of :data:`REVIVE_MODES` (``"none"``: nothing is covered or hooked).
        bump: the amount (weight units, > 0) added to every input weight of a silent neuron.
        all_sum: sums a tensor over processes (distributed training: a neuron is silent when
            it is silent in every process's part of the batch, so that every replica bumps
            the same weights); ``None`` in a single process. It runs inside the step, so it
            must be free of host synchronisation too.
    """

    def __init__(self, model: torch.nn.Module, mode: str, bump: float,
                 all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if isinstance(bump, bool) or not isinstance(bump, (int, float)) or not bump > 0 \
                or bump == float("inf"):
            raise ValueError(f"revive_bump must be a finite number > 0, got {bump!r}")
        self.mode, self.bump, self.all_sum = mode, float(bump), all_sum
        self.layers = covered_layers(model, mode)
        self.counts: list[torch.Tensor | None] = [None] * len(self.layers)
        self.hooks = [layer.register_forward_hook(self._recorder(i))
                      for i, layer in enumerate(self.layers)]
        device = next(model.parameters()).device if self.layers else torch.device("cpu")
        #: bumps of (layer, neuron) pairs since the epoch began, on the device
        self.revived = torch.zeros((), dtype=torch.int64, device=device)

    def _recorder(self, i: int):
        def record(module, inputs, output) -> None:
            if module.training:
                self.counts[i] = output.counts.detach()
        return record

    def after_step(self, counted: bool = True) -> None:
        """Bump the neurons of each covered layer that were silent over the whole batch of
        the last training forward pass, and add their number to :attr:`revived`. Call it
        after the optimizer step. Device tensor operations only: capturable.

        Args:
            counted: ``False`` for a batch whose spikes must not count (a distributed
                placeholder batch, which trains on nothing): its neurons count as silent,
                so the decision is the other processes'.

        Raises:
            RuntimeError: a covered layer has not run a training forward pass since the last
                call.
        """
        for i, layer in enumerate(self.layers):
            counts = self.counts[i]
            if counts is None:
                raise RuntimeError(f"revive: layer {i} of the covered layers has not run a "
                                   "training forward pass since the last step")
            self.counts[i] = None
            totals = spike_totals(counts) * int(counted)
            if self.all_sum is not None:
                totals = self.all_sum(totals)
            silent = totals == 0
            bump_silent(layer.weight, silent, self.bump)
            self.revived.add_(silent.sum())

    def reset_count(self) -> None:
        """Start the count of bumps at zero again (in place, on the device)."""
        self.revived.zero_()

    def epoch_metrics(self) -> dict:
        """The epoch's count of bumps as a metrics-row entry (one read from the device):
        ``{revived_neurons: n}`` (:data:`batsnn.metrics.REVIVED_NEURONS`)."""
        return {M.REVIVED_NEURONS: int(self.revived)}

    def remove(self) -> None:
        """Take the forward hooks off the model."""
        for h in self.hooks:
            h.remove()
        self.hooks = []
