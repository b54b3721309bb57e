"""``nn.Module`` wrappers: thin holders of weights and frozen hyper-parameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from batsnn.functional import lif_linear
from batsnn.params import LIFParams
from batsnn.spikes import SpikeTrains

__all__ = ["LIFLinear", "SpikingSequential"]


class LIFLinear(nn.Module):
    """Dense layer of exact multi-spike LIF neurons (BATS); see :func:`batsnn.functional.lif_linear`.

    Args:
        in_features: number of presynaptic neurons ``N_in``.
        out_features: number of neurons ``N_out``.
        tau_s: synaptic time constant in seconds.
        theta: threshold.
        delta_theta: reset amount (defaults to ``theta``).
        max_spikes: most spikes per neuron.
        dt: time step in seconds for the discretized model; ``None`` for exact time.
        t_max: simulation horizon in seconds.
        (These six are held as one frozen :class:`~batsnn.params.LIFParams`, ``.params``,
        and read back as attributes of the same names.)
        init: ``(low, high)`` of the uniform weight initialisation (BATS: ``(-1, 1)``).

    Shape:
        forward takes ``(B, N_in, S_in)`` spike times (or a :class:`SpikeTrains`) and returns
        :class:`SpikeTrains` with times ``(B, N_out, max_spikes)`` and counts ``(B, N_out)``.
    """

    def __init__(self, in_features: int, out_features: int, *, tau_s: float, theta: float,
                 delta_theta: float | None = None, max_spikes: int, dt: float | None = None,
                 t_max: float = math.inf, init: tuple[float, float] = (-1.0, 1.0),
                 device=None, dtype=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.params = LIFParams(tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                                max_spikes=max_spikes, t_max=t_max, dt=dt)
        self.in_features = in_features
        self.out_features = out_features
        self.init = (float(init[0]), float(init[1]))
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device,
                                               dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the weights uniformly from ``init``."""
        with torch.no_grad():
            self.weight.uniform_(*self.init)

    def forward(self, input_times) -> SpikeTrains:
        if isinstance(input_times, SpikeTrains):
            input_times = input_times.times
        return lif_linear(input_times, self.weight, params=self.params)

    # the neuron's parameters, read through ``params`` (one validated, frozen value)
    tau_s = property(lambda self: self.params.tau_s)
    theta = property(lambda self: self.params.theta)
    delta_theta = property(lambda self: self.params.delta_theta)
    max_spikes = property(lambda self: self.params.max_spikes)
    t_max = property(lambda self: self.params.t_max)
    dt = property(lambda self: self.params.dt or None)

    def extra_repr(self) -> str:
        p = self.params
        return (f"{self.in_features}, {self.out_features}, tau_s={p.tau_s}, "
                f"theta={p.theta}, delta_theta={p.delta_theta}, "
                f"max_spikes={p.max_spikes}, dt={self.dt}, t_max={p.t_max}")


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` that also returns every layer's spike trains.

    ``forward`` returns the last layer's :class:`SpikeTrains`; ``forward_all`` returns the list
    of all layers' outputs (for metrics such as spikes per layer).
    """

    def forward_all(self, input_times) -> list[SpikeTrains]:
        outs = []
        x = input_times
        for layer in self:
            x = layer(x)
            outs.append(x)
        return outs
