"""Functional interface: the exact BATS spiking layer and its argument checks."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from batsnn.ops.lif import lif_linear_op

__all__ = ["SpikeTrains", "lif_linear"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class SpikeTrains(NamedTuple):
    """Spike trains of a layer: the library's one spike-train convention.

    Attributes:
        times: ``(B, N, S)`` float spike times in seconds, ascending along the last axis and
            padded with ``+inf`` after the last spike of each neuron.
        counts: ``(B, N)`` int64 number of finite entries of ``times`` per neuron.
    """

    times: torch.Tensor
    counts: torch.Tensor


def _positive(name: str, value, *, allow_inf: bool = False, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def check_hyperparameters(*, tau_s, theta, delta_theta, max_spikes, t_max=math.inf, dt=None):
    """Validate the layer hyper-parameters; returns them normalised (floats, ``dt`` 0 if None)."""
    tau_s = _positive("tau_s", tau_s)
    theta = _positive("theta", theta)
    delta_theta = theta if delta_theta is None else _positive("delta_theta", delta_theta,
                                                              allow_zero=True)
    if isinstance(max_spikes, bool) or not isinstance(max_spikes, numbers.Integral):
        raise TypeError(f"max_spikes must be an int, got {max_spikes!r}")
    if max_spikes < 1:
        raise ValueError(f"max_spikes must be >= 1, got {max_spikes!r}")
    t_max = _positive("t_max", t_max, allow_inf=True)
    dt = 0.0 if dt is None else _positive("dt", dt, allow_zero=True)
    return tau_s, theta, delta_theta, int(max_spikes), t_max, dt


def _check_tensor(name: str, times) -> None:
    if not isinstance(times, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(times).__name__}")
    if times.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {times.dtype}")
    if times.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, neurons, spikes), got shape "
                         f"{tuple(times.shape)}")


def mark_valid(times: torch.Tensor) -> torch.Tensor:
    """Record that ``times`` is a valid spike-time tensor made by batsnn.

    A later :func:`check_spike_times` of the same, unmodified tensor (same object, same
    version counter) skips the data checks, which on a GPU cost a host synchronisation.
    """
    times._batsnn_valid_version = times._version
    return times


def _marked_valid(times: torch.Tensor) -> bool:
    return getattr(times, "_batsnn_valid_version", None) == times._version


def check_spike_times(name: str, times: torch.Tensor,
                      weight: torch.Tensor | None = None) -> None:
    """Raise if ``times`` is not a valid ``(B, N, S)`` spike-time tensor; mark it valid if
    it is (see :func:`mark_valid`: the same unmodified tensor is not scanned again).

    With ``weight``, also raise if it holds NaN or infinite values (CPU tensors only: on a GPU
    that check would synchronise the host in every forward). On a GPU the data checks share one
    host synchronisation, and are skipped for tensors made by batsnn.
    """
    _check_tensor(name, times)
    t = times.detach()
    if t.device.type == "cpu":
        from batsnn.ops.lif.cpu import all_finite, check_times

        if weight is not None and weight.numel() and not all_finite(weight.detach()):
            raise ValueError("weight contains NaN or infinite values")
        if t.numel() == 0 or _marked_valid(times):
            return
        found = check_times(t)
        if found is not None:
            _raise_time_defect(name, t, *found)
        mark_valid(times)
        return
    # On a GPU the weight values are not inspected (that would cost a host synchronisation
    # in every forward); spike-time data is checked once, unless batsnn made it.
    if t.numel() == 0 or _marked_valid(times):
        return
    no = torch.zeros((), dtype=torch.bool, device=t.device)
    flags = torch.stack([
        torch.isnan(t).any(),
        (t < 0).any(),
        (t[..., 1:] < t[..., :-1]).any() if t.shape[-1] > 1 else no,
    ]).tolist()
    for kind, mask in ((1, torch.isnan(t)), (2, t < 0)):
        if flags[kind - 1]:
            _raise_time_defect(name, t, kind, *torch.nonzero(mask)[0].tolist())
    if flags[2]:
        b, n, s = torch.nonzero(t[..., 1:] < t[..., :-1])[0].tolist()
        _raise_time_defect(name, t, 3, b, n, s + 1)
    mark_valid(times)


def _raise_time_defect(name, t, kind, b, n, s):
    where = f"{name}[{b}, {n}, {s}]"
    if kind == 1:
        raise ValueError(f"{name} contains NaN (first at {where})")
    if kind == 2:
        raise ValueError(f"{name} contains a negative time, {where} = {t[b, n, s].item()!r}; "
                         "spike times are seconds >= 0, padded with +inf")
    raise ValueError(
        f"{name} must be ascending along the last axis and padded with +inf after the last "
        f"spike; {name}[{b}, {n}] = {t[b, n].tolist()} is not (at position {s})")


def lif_linear(input_times: torch.Tensor, weight: torch.Tensor, *, tau_s: float, theta: float,
               delta_theta: float | None = None, max_spikes: int, t_max: float = math.inf,
               dt: float | None = None) -> SpikeTrains:
    r"""Exact spike times of a dense layer of current-based LIF neurons (BATS).

    Each output neuron ``n`` integrates the input spikes ``(t_j, i_j)`` with

    .. math::
        V(t) = \tau \sum_{t_j<t} w_{n,i_j}\,(e^{-(t-t_j)/\tau} - e^{-(t-t_j)/\tau_s})
               - \vartheta_\Delta \sum_{t_k<t} e^{-(t-t_k)/\tau},\qquad \tau = 2\tau_s,

    and spikes when ``V`` reaches ``theta``; each spike lowers ``V`` by ``delta_theta``.
    Spike times are the exact roots of the threshold equation (model.md section 1), found
    event by event. The op is differentiable with respect to ``weight`` and ``input_times``
    with the exact BATS gradient of the spike times that exist (section 2).

    With ``dt > 0`` the layer follows the naive time discretization of section 6: each
    continuous crossing ``t*`` is emitted at ``grid(t*) = t* + dt - fmod(t*, dt)`` (see
    :func:`batsnn.discretize`), the window tests use emitted times, the reset uses ``t*``,
    and gradients pass straight through ``grid``. Inputs are integrated as given: discretize
    them first (the encoder's output, or a previous layer run with the same ``dt``).

    Args:
        input_times: ``(B, N_in, S_in)`` float32/float64 spike times in seconds (>= 0),
            ascending per neuron, padded with ``+inf``.
        weight: ``(N_out, N_in)`` weights, same dtype and device as ``input_times``.
        tau_s: synaptic time constant in seconds (> 0); the membrane's is ``2 * tau_s``.
        theta: firing threshold (> 0).
        delta_theta: reset amount (>= 0); defaults to ``theta``.
        max_spikes: ``K``, the most spikes a neuron emits (>= 1).
        t_max: simulation horizon in seconds; no spike is emitted after it.
        dt: time step in seconds; ``None`` or ``0`` means exact continuous time.

    Returns:
        :class:`SpikeTrains` ``(times, counts)``: ``times`` ``(B, N_out, max_spikes)``
        ascending, padded with ``+inf``, in the dtype of ``input_times``; ``counts``
        ``(B, N_out)`` int64.

    Raises:
        TypeError, ValueError: naming the argument and the offending value. On CUDA tensors
        the weight values are not inspected for NaN or infinity (the check would cost a host
        synchronisation per call, and none is allowed in a CUDA graph); ``batsnn train``
        checks its parameters whenever it reports progress.
    """
    tau_s, theta, delta_theta, max_spikes, t_max, dt = check_hyperparameters(
        tau_s=tau_s, theta=theta, delta_theta=delta_theta, max_spikes=max_spikes, t_max=t_max,
        dt=dt)
    _check_tensor("input_times", input_times)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2 or weight.shape[1] != input_times.shape[1]:
        raise ValueError(f"weight must have shape (N_out, N_in={input_times.shape[1]}), got "
                         f"{tuple(weight.shape)}")
    if weight.dtype != input_times.dtype:
        raise TypeError(f"weight dtype {weight.dtype} does not match input_times dtype "
                        f"{input_times.dtype}")
    if weight.device != input_times.device:
        raise ValueError(f"weight is on {weight.device} but input_times is on "
                         f"{input_times.device}")
    check_spike_times("input_times", input_times, weight)
    times, counts = lif_linear_op(input_times, weight, tau_s, theta, delta_theta, max_spikes,
                                  t_max, dt)
    return SpikeTrains(mark_valid(times), counts)
