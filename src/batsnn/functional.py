"""Functional interface: the exact BATS spiking layers."""

from __future__ import annotations

import math

import torch

from batsnn.ops.lif import lif_op
from batsnn.ops.lif.synapse import DENSE
from batsnn.params import LIFParams
from batsnn.spikes import SpikeTrains, _check_tensor, check_spike_times, mark_valid

__all__ = ["LIFParams", "SpikeTrains", "lif_linear"]


def lif_linear(input_times: torch.Tensor, weight: torch.Tensor, *, tau_s: float | None = None,
               theta: float | None = None, delta_theta: float | None = None,
               max_spikes: int | None = None, t_max: float = math.inf,
               dt: float | None = None, params: LIFParams | None = None) -> SpikeTrains:
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
    continuous crossing ``t*`` is emitted at ``grid(t*) = (floor(t*/dt) + 1) * dt``, the first
    grid point strictly after it (see :func:`batsnn.discretize`); the window tests compare
    integer grid indices (:mod:`batsnn.ops.lif.grid`), the reset uses ``t*``, and gradients
    pass straight through ``grid``. Inputs are integrated as given: discretize them first (the
    encoder's output, or a previous layer run with the same ``dt``).

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
        params: the neuron's parameters as one :class:`~batsnn.params.LIFParams`, instead of
            the keywords above (then give none of them).

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
    p = _params(params, tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                max_spikes=max_spikes, t_max=t_max, dt=dt)
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
    check_memory(input_times, weight.shape[0], p)
    times, counts = lif_op(input_times, weight, p, DENSE)
    return SpikeTrains(mark_valid(times), counts)


_UNSET = {"tau_s": None, "theta": None, "delta_theta": None, "max_spikes": None,
          "t_max": math.inf, "dt": None}


def _params(params: LIFParams | None, **kw) -> LIFParams:
    """The layer's :class:`LIFParams`: ``params`` itself, or built (and validated) from the
    keywords; giving both is an error."""
    if params is None:
        for name in ("tau_s", "theta", "max_spikes"):
            if kw[name] is None:
                raise TypeError(f"{name} is required (or pass params=LIFParams(...))")
        return LIFParams(**kw)
    if not isinstance(params, LIFParams):
        raise TypeError(f"params must be a batsnn.LIFParams, got {type(params).__name__}")
    given = [k for k, v in kw.items() if v is not _UNSET[k] and v != _UNSET[k]]
    if given:
        raise TypeError(f"give either params or {', '.join(given)}, not both")
    return params


def _device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (``None`` if unknown); no host synchronisation."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(input_times: torch.Tensor, n_out: int, p: LIFParams) -> None:
    """Raise ``MemoryError`` naming the sizes when a layer's buffers cannot fit in memory.

    Estimated up front from the shapes: the output times and counts, what the backward keeps
    (continuous times, windows, ``X``, 20 bytes per output slot) and the sorted event list of
    the input (about 60 bytes per input slot), against the device's total memory.
    """
    n_batch = input_times.shape[0]
    n_slots = input_times[0].numel() if n_batch else 0
    out_slots = n_batch * n_out * p.max_spikes
    need = (out_slots * (input_times.element_size() + 20) + n_batch * n_out * 8
            + n_batch * n_slots * 60)
    have = _device_memory(input_times.device)
    if have is not None and need > have:
        gib = 2.0 ** 30
        raise MemoryError(
            f"this layer needs about {need / gib:.1f} GiB for its spike buffers (batch "
            f"{n_batch} x {n_out} neurons x max_spikes={p.max_spikes}, input {n_slots} slots "
            f"per sample) but {input_times.device} has {have / gib:.1f} GiB in all: lower "
            "max_spikes, the layer width or the batch size")
