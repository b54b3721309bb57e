"""Functional interface: the exact BATS spiking layers."""

from __future__ import annotations

import math
import numbers

import torch

from batsnn.ops.lif import lif_op, pool_op
from batsnn.ops.lif.synapse import DENSE, Conv2d, DelayedDense
from batsnn.ops.recurrent import recurrent_op
from batsnn.params import LIFParams
from batsnn.spikes import (SpikeTrains, check_counts, check_spike_times, check_tensor,
                           mark_valid, marked_valid, weight_abs_max)

__all__ = ["LIFParams", "SpikeTrains", "lif_conv2d", "lif_linear", "lif_recurrent",
           "spike_delay", "spike_flatten", "spike_pool2d"]


def _check_dense_input(input_times: torch.Tensor, weight: torch.Tensor) -> None:
    """The checks a dense layer's ``input_times`` ``(B, N_in, S_in)`` and ``weight``
    ``(N_out, N_in)`` share (:func:`lif_linear`, :func:`lif_recurrent`)."""
    check_tensor("input_times", input_times)
    _check_weight_tensor(weight, input_times)
    if weight.dim() != 2 or weight.shape[1] != input_times.shape[1]:
        raise ValueError(f"weight must have shape (N_out, N_in={input_times.shape[1]}), got "
                         f"{tuple(weight.shape)}")


def lif_linear(input_times: torch.Tensor, weight: torch.Tensor, *, tau_s: float | None = None,
               theta: float | None = None, delta_theta: float | None = None,
               max_spikes: int | None = None, t_max: float = math.inf,
               dt: float | None = None, reset_at: str = "crossing",
               params: LIFParams | None = None,
               delay: torch.Tensor | None = None) -> SpikeTrains:
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
    encoder's output, or a previous layer run with the same ``dt``). With
    ``reset_at="emitted"`` the layer is the consistent discrete model instead: spikes and
    resets both happen on the grid; a neuron spikes at each grid point after its crossing
    at which ``V >= theta``, so it fires again at the next grid point when a reset leaves
    it at or above ``theta`` (such a forced spike's time does not move with the inputs: no
    gradient), and the reset coupling of the gradient goes through the emitted times.

    Args:
        input_times: ``(B, N_in, S_in)`` float32/float64 spike times in seconds (>= 0),
            ascending per neuron, padded with ``+inf``; finite times at most ``4.5e6 *
            tau_s`` (``params.max_time``; checked on the CPU, not scanned on a GPU).
        weight: ``(N_out, N_in)`` weights, same dtype and device as ``input_times``, of
            magnitude at most ``1e9 * theta / tau_s`` (checked on the CPU).
        tau_s: synaptic time constant in seconds, in ``[1e-9, 1e6]``; the membrane's is
            ``2 * tau_s``.
        theta: firing threshold, in ``[1e-12, 1e12]``.
        delta_theta: reset amount, 0 or in ``[1e-12, 1e12]``; defaults to ``theta``.
        max_spikes: ``K``, the most spikes a neuron emits (``1 <= K <= 2**31 - 1``).
            (The ranges batsnn supports: docs/model.md section 7.)
        t_max: simulation horizon in seconds; no spike is emitted after it.
        dt: time step in seconds, in ``[1e-9, 4.5e6] * tau_s``; ``None`` or ``0`` means
            exact continuous time.
        reset_at: on the grid, ``"crossing"`` (the default: the reset at ``t*``) or
            ``"emitted"`` (at the emitted grid time); see :class:`~batsnn.params.LIFParams`.
        params: the neuron's parameters as one :class:`~batsnn.params.LIFParams`, instead of
            the keywords above (then give none of them).
        delay: ``None`` (no delays), or per-synapse delays ``(N_out, N_in)`` in seconds,
            finite and ``>= 0``, of ``weight``'s dtype and device: input ``i``'s spike at
            ``t`` reaches neuron ``n`` at ``t + delay[n, i]`` (model.md section 7, "Synaptic
            delays"), each neuron integrating its own time-ordered stream of delayed events
            (on the grid, their indices by the same ``floor_index`` rule). Differentiable:
            ``dL/d delay[n, i]`` is the sum of the time gradients of that synapse's delayed
            events. CPU tensors only; delayed times must stay within ``params.max_time``.

    Returns:
        :class:`SpikeTrains` ``(times, counts)``: ``times`` ``(B, N_out, max_spikes)``
        ascending, padded with ``+inf``, in the dtype of ``input_times``; ``counts``
        ``(B, N_out)`` int64.

    Raises:
        TypeError, ValueError: naming the argument and the offending value; also for
            parameters outside the ranges batsnn supports (:class:`~batsnn.params.LIFParams`)
            and, on the CPU, for weights of magnitude above ``params.max_weight`` (``1e9 *
            theta / tau_s``, docs/model.md section 7). On CUDA tensors the weight values are
            not inspected for NaN, infinity or magnitude (the check would cost a host
            synchronisation per call, and none is allowed in a CUDA graph); ``batsnn train``
            checks its parameters whenever it reports progress.
    """
    p = _params(params, tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
    _check_dense_input(input_times, weight)
    if delay is not None:
        _check_delay(delay, weight, input_times)
    check_spike_times("input_times", input_times, weight, max_weight=p.max_weight,
                      max_time=p.max_time)
    if delay is not None:
        return _lif_linear_delayed(input_times, weight, delay, p)
    check_memory(input_times, weight.shape[0], p)
    times, counts = lif_op(input_times, weight, p, DENSE)
    return SpikeTrains(mark_valid(times), counts)


def lif_recurrent(input_times: torch.Tensor, weight: torch.Tensor,
                  recurrent_weight: torch.Tensor, *, tau_s: float | None = None,
                  theta: float | None = None, delta_theta: float | None = None,
                  max_spikes: int | None = None, t_max: float = math.inf,
                  dt: float | None = None, reset_at: str = "crossing",
                  params: LIFParams | None = None) -> SpikeTrains:
    r"""Exact spike times of a recurrent layer of LIF neurons (docs/model.md, "Recurrent
    layers").

    Neuron ``n`` is the neuron of :func:`lif_linear` whose presynaptic spikes are the input
    spikes (weights ``weight[n, i]``) and every spike of every neuron ``m`` of the layer
    itself (weights ``recurrent_weight[n, m]``, the diagonal included), each acting from
    its own time on with the same kernel, plus its own reset. Events are taken in time
    order, the layer's spikes joining them as they happen, so every spike time is exact.
    A spike emitted at ``t`` acts only for times after ``t``: neurons whose crossings
    coincide all spike at that time. Differentiable with respect to ``input_times``,
    ``weight`` and ``recurrent_weight`` (the BATS gradient, errors flowing backward in time
    through the recurrent spikes).

    With ``dt > 0`` (model.md section 6) each spike is emitted at the grid point after its
    crossing, the window tests compare grid indices as in :func:`lif_linear`, and a layer
    spike acts on the layer from its emitted grid time; its own reset is applied at the
    crossing (``reset_at="crossing"``) or at the emitted time (``"emitted"``, with the
    spikes the grid forces). Gradients pass straight through the grid.

    Runs on the CPU kernels; CUDA tensors are computed by the same kernels on the host and
    the results moved back to their device (no GPU kernel of this layer yet).

    Args:
        input_times: ``(B, N_in, S_in)`` spike times, as for :func:`lif_linear`.
        weight: ``(N, N_in)`` input weights, as for :func:`lif_linear`.
        recurrent_weight: ``(N, N)`` weights between the layer's neurons, same dtype and
            device as ``input_times``, finite, of magnitude at most ``params.max_weight``
            (checked on the CPU).
        tau_s, theta, delta_theta, max_spikes, t_max, dt, reset_at, params: the neuron's
            parameters, as for :func:`lif_linear`.

    Returns:
        :class:`SpikeTrains` ``(times (B, N, max_spikes), counts (B, N))``.

    Raises:
        TypeError, ValueError: naming the argument and the offending value, as for
            :func:`lif_linear`, and for a ``recurrent_weight`` of the wrong type, dtype,
            device or shape, holding NaN or infinite values or too large magnitudes.
    """
    p = _params(params, tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
    _check_dense_input(input_times, weight)
    _check_weight_tensor(recurrent_weight, input_times, "recurrent_weight")
    n = weight.shape[0]
    if tuple(recurrent_weight.shape) != (n, n):
        raise ValueError(f"recurrent_weight must have shape (N, N) = ({n}, {n}) for weight of "
                         f"shape {tuple(weight.shape)}, got {tuple(recurrent_weight.shape)}")
    if recurrent_weight.device.type == "cpu":
        top = weight_abs_max(recurrent_weight)
        if not math.isfinite(top):
            raise ValueError("recurrent_weight contains NaN or infinite values")
        if top > p.max_weight:
            raise ValueError(f"recurrent_weight holds a magnitude {top:g}, beyond the "
                             f"|weight| <= {p.max_weight:g} that batsnn supports "
                             f"(docs/model.md section 7)")
    check_spike_times("input_times", input_times, weight, max_weight=p.max_weight,
                      max_time=p.max_time)
    check_memory(input_times, n, p, list_bytes=32)  # the item records of the backward
    times, counts = recurrent_op(input_times, weight, recurrent_weight, p)
    return SpikeTrains(mark_valid(times), counts)


def _check_delay_like(delay, ref: torch.Tensor, ref_name: str, or_none: str = "") -> None:
    """``delay`` is a tensor of ``ref``'s dtype and device; raises naming both."""
    if not isinstance(delay, torch.Tensor):
        raise TypeError(f"delay must be a torch.Tensor{or_none}, got {type(delay).__name__}")
    if delay.dtype != ref.dtype:
        raise TypeError(f"delay dtype {delay.dtype} does not match {ref_name} dtype {ref.dtype}")
    if delay.device != ref.device:
        raise ValueError(f"delay is on {delay.device} but {ref_name} is on {ref.device}")


def _check_delay(delay, weight: torch.Tensor, input_times: torch.Tensor) -> None:
    """``delay`` is an ``(N_out, N_in)`` CPU tensor of ``weight``'s dtype and device holding
    finite numbers ``>= 0``; raises naming ``delay`` and the bad index and value."""
    _check_delay_like(delay, weight, "weight", " or None")
    if delay.device.type != "cpu":
        raise ValueError(f"per-synapse delays run on the CPU only, got delay on {delay.device}")
    if delay.shape != weight.shape:
        raise ValueError(f"delay must have the weight's shape (N_out, N_in) = "
                         f"{tuple(weight.shape)}, got {tuple(delay.shape)}")
    d = delay.detach()
    bad = ~torch.isfinite(d) | (d < 0)
    if bool(bad.any()):
        n, i = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"delay must hold finite numbers >= 0 (seconds), got delay[{n}, {i}] "
                         f"= {d[n, i].item()!r}")


def _lif_linear_delayed(input_times, weight, delay, p: LIFParams) -> SpikeTrains:
    """The dense layer with per-synapse delays (checked arguments): one row per (sample,
    output neuron) holding the delayed input times, run through the op with the
    :class:`~batsnn.ops.lif.synapse.DelayedDense` synapse; autograd carries each row's
    time gradients to ``input_times`` and ``delay``."""
    n_batch, n_in, s_in = input_times.shape
    n_out = weight.shape[0]
    if n_out * n_in > 2**31 - 1:
        raise ValueError(f"per-synapse delays take at most 2**31 - 1 synapses, got "
                         f"{n_out} x {n_in}")
    if n_batch and n_in and s_in:
        last = torch.where(torch.isfinite(input_times), input_times, 0.0).detach()
        last = last.amax(dim=(0, 2))  # the latest finite spike of each input channel
        reach = last[None, :] + delay.detach()
        if bool((reach > p.max_time).any()):
            n, i = (int(v) for v in torch.nonzero(reach > p.max_time)[0])
            raise ValueError(
                f"delay[{n}, {i}] = {delay[n, i].item()!r} moves input {i}'s spike at "
                f"{last[i].item()!r} s past {p.max_time!r} s (params.max_time, 4.5e6 * tau_s)")
    check_memory(input_times, n_out, p, list_bytes=60 * (n_out - 1))
    # +inf padding stays +inf (the delays are finite), and gets no gradient
    rows = (input_times[:, None] + delay[None, :, :, None]).reshape(n_batch * n_out, n_in, s_in)
    times, counts = lif_op(rows, weight, p, DelayedDense(n_out=n_out, n_in=n_in))
    return SpikeTrains(mark_valid(times.reshape(n_batch, n_out, p.max_spikes)),
                       counts.reshape(n_batch, n_out))


def lif_conv2d(input_times: torch.Tensor, weight: torch.Tensor, *, stride=1, padding=0,
               tau_s: float | None = None, theta: float | None = None,
               delta_theta: float | None = None, max_spikes: int | None = None,
               t_max: float = math.inf, dt: float | None = None, reset_at: str = "crossing",
               params: LIFParams | None = None) -> SpikeTrains:
    r"""Exact spike times of a convolutional layer of LIF neurons (BATS); no bias.

    Output neuron ``(co, oy, ox)`` is the LIF neuron of :func:`lif_linear` (model.md
    sections 1, 2 and 6: exact forward, exact BATS gradient, the time grid when ``dt > 0``)
    whose inputs are the spikes of its receptive field, input neurons
    ``(ci, oy * sy - py + ky, ox * sx - px + kx)`` for ``0 <= ky < kH``, ``0 <= kx < kW``,
    with the shared weights ``weight[co, ci, ky, kx]``; padded positions hold no spikes. The
    weight gradient sums over the output positions; the input times get their gradient from
    every position that reads them.

    Its semantics are defined as those of the dense layer :func:`lif_linear` whose weight
    matrix is the unrolled convolution (zeros outside each receptive field,
    :func:`batsnn.ops.lif.naive.unroll_conv_weight`): in the dense layer's global event list
    an event of weight zero changes neither ``A`` nor ``B``, so a neuron that reads only its
    receptive field's events in time order, each window ending at its next receptive-field
    event (with ``dt > 0``: that event's grid index), emits the same spikes. The tests hold
    the kernels to that dense layer, on the grid too.

    Args:
        input_times: ``(B, C_in, H, W, S_in)`` float32/float64 spike times in seconds (>= 0),
            ascending per neuron, padded with ``+inf``; at most ``4.5e6 * tau_s``, as for
            :func:`lif_linear`.
        weight: ``(C_out, C_in, kH, kW)``, same dtype and device as ``input_times``.
        stride: ``sy = sx`` or ``(sy, sx)``, ints >= 1.
        padding: ``py = px`` or ``(py, px)``, ints >= 0 ("valid", 0, by default).
        tau_s, theta, delta_theta, max_spikes, t_max, dt, reset_at, params: the neuron's
            parameters, as for :func:`lif_linear`.

    Returns:
        :class:`SpikeTrains`: times ``(B, C_out, H_out, W_out, max_spikes)`` (ascending,
        ``+inf``-padded, the dtype of ``input_times``) and counts ``(B, C_out, H_out, W_out)``
        int64, with ``H_out = (H + 2 py - kH) // sy + 1`` and likewise ``W_out``.

    Raises:
        TypeError, ValueError: naming the argument and the offending value, as for
        :func:`lif_linear` (weight magnitudes included).
    """
    p = _params(params, tau_s=tau_s, theta=theta, delta_theta=delta_theta,
                max_spikes=max_spikes, t_max=t_max, dt=dt, reset_at=reset_at)
    check_tensor("input_times", input_times, ndim=5)
    _check_weight_tensor(weight, input_times)
    if weight.dim() != 4 or weight.shape[1] != input_times.shape[1]:
        raise ValueError(f"weight must have shape (C_out, C_in={input_times.shape[1]}, kH, kW), "
                         f"got {tuple(weight.shape)}")
    n_batch, c_in, h, w, s_in = input_times.shape
    c_out = weight.shape[0]
    if min(weight.shape) < 1:
        raise ValueError(f"weight must have no empty axis, got shape {tuple(weight.shape)}")
    synapse = Conv2d(in_shape=(c_in, h, w), kernel=tuple(weight.shape[2:]), stride=stride,
                     padding=padding)
    check_spike_times("input_times", input_times, weight, max_weight=p.max_weight,
                      max_time=p.max_time)
    flat = input_times.reshape(n_batch, c_in * h * w, s_in)
    (kh, kw), (sy, sx) = synapse.kernel, synapse.stride
    if input_times.device.type == "cuda":
        # one event row per (sample, position) holding its whole receptive field, about
        # 60 bytes per row slot (batsnn.ops.lif.cuda.conv)
        list_bytes = 60 * synapse.positions * c_in * kh * kw // (c_in * h * w)
    else:
        # the receptive-field lists: each input slot lands in up to ceil(k/s) x ceil(k/s)
        # lists
        list_bytes = 28 * -(-kh // sy) * -(-kw // sx)
    check_memory(flat, c_out * synapse.positions, p, list_bytes=list_bytes)
    times, counts = lif_op(flat, weight, p, synapse)
    h_out, w_out = synapse.out_hw
    shape = (n_batch, c_out, h_out, w_out)
    return SpikeTrains(mark_valid(times.reshape(*shape, p.max_spikes)), counts.reshape(shape))


def spike_pool2d(times: torch.Tensor, counts: torch.Tensor, kernel_size: int = 2) -> SpikeTrains:
    """Spike pooling: each output neuron's train is the time-ordered union of all spikes of
    its ``k x k`` window (model.md section 5).

    Nothing is dropped: the output buffer holds the ``k * k`` input buffers
    (``k * k * S`` slots) and the count is the sum of the window's counts. Spikes of equal
    time keep the window's order (row by row). Each pooled spike is its source spike, so its
    gradient goes back unchanged to that spike (plain torch ops: a reshape, a permutation and
    a stable sort along the last axis, differentiable in the values; ``+inf`` padding sorts
    last). Runs on cpu and cuda tensors.

    Maps whose height or width is not a multiple of ``k`` lose their last rows / columns
    (floor, as the seed's pooling): an output covers input rows ``oy * k .. oy * k + k - 1``
    and ``H_out = H // k``, ``W_out = W // k``.

    Args:
        times: ``(B, C, H, W, S)`` float spike times in seconds (ascending, ``+inf``-padded).
        counts: ``(B, C, H, W)`` integer spikes per neuron: the finite entries of ``times``
            (checked on the CPU; on a GPU that check would synchronise the host).
        kernel_size: ``k``, an int (numpy ints included) with ``1 <= k <= min(H, W)``.

    Returns:
        :class:`SpikeTrains`: times ``(B, C, H // k, W // k, k * k * S)`` and counts
        ``(B, C, H // k, W // k)``.
    """
    check_tensor("times", times, ndim=5)
    check_counts(counts, times, values=False)
    k = kernel_size
    n_batch, c, h, w, s = times.shape
    if (isinstance(k, bool) or not isinstance(k, numbers.Integral)
            or not 1 <= k <= min(h, w)):
        raise ValueError(f"kernel_size must be an int in [1, min(H, W) = {min(h, w)}], got {k!r}")
    k = int(k)
    check_spike_times("times", times)
    check_counts(counts, times)
    ho, wo = h // k, w // k
    pooled = pool_op(times, k)
    cnt = counts[:, :, :ho * k, :wo * k].reshape(n_batch, c, ho, k, wo, k).sum((3, 5))
    return SpikeTrains(mark_valid(pooled), cnt.to(torch.int64))


def spike_flatten(times: torch.Tensor, counts: torch.Tensor) -> SpikeTrains:
    """Spike trains ``(B, *neurons, S)`` with counts ``(B, *neurons)`` as ``(B, N, S)`` and
    ``(B, N)`` (``N`` the product of the neuron axes, in C order): the input of a dense
    layer after convolutions. A view where possible; a valid input stays marked valid.

    Raises:
        TypeError, ValueError: ``times`` not a float32/float64 tensor of at least 2 axes, or
        ``counts`` not an integer tensor of shape ``times.shape[:-1]`` on the same device.
    """
    check_tensor("times", times, ndim=None)
    check_counts(counts, times, values=False)
    out = times.reshape(times.shape[0], -1, times.shape[-1])
    if marked_valid(times):
        mark_valid(out)
    return SpikeTrains(out, counts.reshape(counts.shape[0], -1))


def spike_delay(times: torch.Tensor, counts: torch.Tensor, delay: torch.Tensor) -> SpikeTrains:
    """Axonal delays: every spike of channel ``c`` (axis 1 of ``times``) moved later by
    ``delay[c]`` seconds.

    One delay per channel keeps each train ascending, so nothing is re-sorted and the counts
    are unchanged. The output is the plain sum ``times + delay`` at the finite entries
    (``+inf`` padding stays ``+inf``), so its gradient is exact: each spike's time gradient
    passes unchanged to the input time, and ``dL/d delay[c]`` is the sum of the time
    gradients of channel ``c``'s spikes (padding entries contribute nothing). A delayed spike
    at or after the next layer's ``t_max`` is past that layer's horizon; on a grid the next
    layer puts the delayed times on its grid by the usual rule.

    Args:
        times: ``(B, C, ..., S)`` spike times (ascending, ``+inf``-padded), float32 or
            float64; ``C`` channels on axis 1 (the neurons of a dense layer, the maps of a
            convolution).
        counts: ``(B, C, ...)`` integer spikes per neuron (the finite entries of ``times``).
        delay: ``(C,)`` delays in seconds, finite and ``>= 0``, of ``times``' dtype and
            device (the values are checked on the CPU; on a GPU they are not inspected, as
            weights are not: that check would synchronise the host in every forward).

    Returns:
        :class:`SpikeTrains` of the same shapes as the input.

    Raises:
        TypeError, ValueError: naming the argument and, for a bad delay, its index and value.
    """
    check_tensor("times", times, ndim=None)
    check_counts(counts, times, values=False)
    _check_delay_like(delay, times, "times")
    if times.dim() < 3:
        raise ValueError(f"times must be (B, C, ..., S) with at least 3 axes, got shape "
                         f"{tuple(times.shape)}")
    if delay.shape != (times.shape[1],):
        raise ValueError(f"delay must have shape (C,) = ({times.shape[1]},) for times of shape "
                         f"{tuple(times.shape)}, got {tuple(delay.shape)}")
    if delay.device.type == "cpu" and delay.numel():
        d = delay.detach()
        bad = ~torch.isfinite(d) | (d < 0)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(f"delay must hold finite numbers >= 0 (seconds), got delay[{i}] = "
                             f"{d[i].item()!r}")
    check_spike_times("times", times)
    check_counts(counts, times)
    shift = delay.reshape((1, -1) + (1,) * (times.dim() - 2))
    out = torch.where(torch.isfinite(times), times + shift, times)
    return SpikeTrains(mark_valid(out), counts)


_UNSET = {"tau_s": None, "theta": None, "delta_theta": None, "max_spikes": None,
          "t_max": math.inf, "dt": None, "reset_at": "crossing"}


def _check_weight_tensor(weight, input_times: torch.Tensor, name: str = "weight") -> None:
    """``weight`` (called ``name`` in errors) is a tensor of the dtype and on the device of
    ``input_times`` (its shape is the caller's to check)."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype != input_times.dtype:
        raise TypeError(f"{name} dtype {weight.dtype} does not match input_times dtype "
                        f"{input_times.dtype}")
    if weight.device != input_times.device:
        raise ValueError(f"{name} is on {weight.device} but input_times is on "
                         f"{input_times.device}")


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


def device_memory(device) -> int | None:
    """Total memory of ``device`` (a ``torch.device`` or its name) in bytes (``None`` if
    unknown, and for the ``meta`` device, which allocates nothing); no host synchronisation."""
    device = torch.device(device)
    if device.type == "meta":
        return None
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(input_times: torch.Tensor, n_out: int, p: LIFParams,
                 list_bytes: int = 0) -> None:
    """Raise ``MemoryError`` naming the sizes when a layer's buffers cannot fit in memory.

    Estimated up front from the shapes: the output times and counts, what the backward keeps
    (continuous times, windows, ``X``, 20 bytes per output slot) and the sorted event list of
    the input (about 60 bytes per input slot, plus ``list_bytes`` more per input slot for a
    synapse's own lists, e.g. a convolution's receptive-field lists), against the device's
    total memory.
    """
    n_batch = input_times.shape[0]
    n_slots = input_times[0].numel() if n_batch else 0
    out_slots = n_batch * n_out * p.max_spikes
    need = (out_slots * (input_times.element_size() + 20) + n_batch * n_out * 8
            + n_batch * n_slots * (60 + list_bytes))
    have = device_memory(input_times.device)
    if have is not None and need > have:
        gib = 2.0 ** 30
        raise MemoryError(
            f"this layer needs about {need / gib:.1f} GiB for its spike buffers (batch "
            f"{n_batch} x {n_out} neurons x max_spikes={p.max_spikes}, input {n_slots} slots "
            f"per sample) but {input_times.device} has {have / gib:.1f} GiB in all: lower "
            "max_spikes, the layer width or the batch size")
