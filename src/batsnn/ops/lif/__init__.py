"""The LIF layer op: one ``autograd.Function`` over a backend and a synapse.

Backends: ``naive`` (Python loops, tests only), ``cpu`` (numba) and ``cuda`` (Triton,
optional). Every backend module implements the same three functions (the contract below);
argument checks live in :mod:`batsnn.functional` and :mod:`batsnn.spikes`, never in a backend.

Backend contract (``p`` is a validated :class:`batsnn.params.LIFParams`, ``synapse`` a value
of :mod:`batsnn.ops.lif.synapse`):

- ``sort_events(input_times, p[, synapse]) -> Events``: the time-sorted per-sample event
  list (:class:`batsnn.ops.lif.events.Events`) of valid ``(B, N_in, S_in)`` spike trains.
  A backend with kernels for synapses other than the dense one takes ``synapse`` (it is
  only passed for those) and may return a NamedTuple with the fields of ``Events`` and more
  tensors of that synapse's own (the CPU backend: a convolution's receptive-field lists,
  :class:`batsnn.ops.lif.cpu.rf.ConvEvents`; the GPU backend: ``Events`` over one row per
  sample and output position, :mod:`batsnn.ops.lif.cuda.conv`); it is handed back to
  ``forward`` and ``backward`` as it was. Whatever its rows, ``perm`` maps the events to
  ``input_times.reshape(B, -1)``, where the op adds their gradients.
- ``forward(ev, weight, p, *, synapse, need_aux) -> (times, t_cont, window, x, counts)``:
  emitted times ``(B, N_out, K)`` in ``weight``'s dtype, then what the backward needs
  (continuous crossing times, the event window of each spike, ``X = sqrt(D)`` at it; for a
  spike forced by the grid under ``p.reset_at == "emitted"``, its emitted time and
  ``X = +inf``; empty ``(0, 0, 0)`` tensors when ``need_aux`` is false) and counts
  ``(B, N_out)`` int64.
- ``backward(grad_times, saved, ev, weight, p, *, synapse, need_input) -> (g_events, g_weight)``:
  the gradient of each event of ``ev.perm`` ``(B, M)`` (zeros when ``need_input`` is false) and of
  the weight, in the weight's layout.
- optional, ``pool(times, k) -> pooled or None``: spike pooling of valid ``(B, C, H, W, S)``
  trains with a kernel of the backend's own (the result of :func:`pool_reference`,
  differentiable in ``times``), or ``None`` where the backend has none for that input; then
  :func:`pool_op` runs the torch ops of :func:`pool_reference`.

Glossary: one name per concept in the reference (:mod:`.naive`), the CPU kernels
(:mod:`.cpu`, lower case) and the Triton kernels (:mod:`.cuda`, compile-time switches in
upper case):

- ``on_grid`` / ``ON_GRID``: ``dt > 0`` (``p.on_grid``): spike times are decided on
  integer grid indices and emitted at grid points (model.md section 6).
- ``reset_on_grid`` / ``RESET_ON_GRID``: ``reset_at="emitted"`` on a grid
  (``p.reset_on_grid``): a spike's reset is applied at its emitted grid time.
- ``G(k) = k * dt``: grid point ``k``; ``floor_index(t)``: the largest ``k`` with
  ``G(k) <= t`` (:mod:`.grid`); ``kin``/``kup``: an event's index and its window's upper
  index bound (:class:`.events.Events`); ``k_tmax`` (``k_T``): the last grid index at or
  before ``t_max`` (:func:`.grid.last_index`).
- ``ref`` / ``r``: a segment's reference time; ``es``/``ex``: an event's
  ``exp((t - r)/tau_s)`` and ``exp((t - r)/tau)``; ``up``/``xup``: a window's end and its
  ``x = exp(-(up - r)/tau)``; ``X = sqrt(D)`` at a spike.
- ``lo``/``hi``: a window's bounds (times, or grid indices on a grid), ``last``: a lane's
  last emitted time or index, ``lower = max(lo, last)``, ``mark``: a spike's time or index
  as the window tests see it.
- the steps, named alike in both kernel cores: ``integrate`` (add an event to ``A``/``B``),
  ``rescale`` (move sums to another reference time), ``may_cross`` (root-free pre-test of a
  crossing before the window's end), ``above_at_start`` (``V >= theta`` at the window's
  start), ``may_fire`` (``may_cross``, or under ``reset_on_grid`` held at or above
  threshold with ``A <= 0``), ``emit`` (exact root, window test, store, reset),
  ``past_horizon``/``t_stop`` (an input from which no window holds a spike), and backward
  ``spike_errors`` (errors through the reset coupling), ``add_window_spikes`` (a window's
  spikes into the sums ``e1``/``e2``), ``weight_coef``/``time_coef`` (an event's gradient
  coefficients); ``forward_kernel``/``backward_kernel`` the compiled drivers,
  ``build_events`` the event lists' kernel.
- a spike *forced* by the grid (``reset_on_grid``): no crossing after the lane's last
  emitted index; stored with ``X = +inf`` and no gradient.
"""

from __future__ import annotations

import torch

from batsnn.ops.lif.synapse import DENSE
from batsnn.params import LIFParams

__all__ = ["LIFFunction", "backend_for", "lif_op", "pool_op", "pool_reference"]


def backend_for(device: torch.device):
    """The backend module of a device: :mod:`.cpu` or :mod:`.cuda`."""
    if device.type == "cuda":
        try:
            from batsnn.ops.lif import cuda
        except ImportError as e:
            raise RuntimeError("batsnn's GPU kernels need Triton (bundled with PyTorch's CUDA "
                               f"builds; pip install triton): {e}") from e
        return cuda
    if device.type != "cpu":
        raise ValueError(f"batsnn runs on cpu or cuda tensors, got device {device}")
    from batsnn.ops.lif import cpu

    return cpu


class LIFFunction(torch.autograd.Function):
    """Exact forward and BATS backward of a layer of LIF neurons (model.md sections 1, 2, 6)."""

    @staticmethod
    def forward(ctx, input_times, weight, p: LIFParams, synapse, need_grad=True):
        backend = backend_for(input_times.device)
        if synapse.kind == "dense":
            ev = backend.sort_events(input_times, p)
        else:  # one check of the synapse's fit for every backend
            synapse.check_input(input_times)
            ev = backend.sort_events(input_times, p, synapse=synapse)
        out_t, out_tc, out_win, out_x, counts = backend.forward(
            ev, weight, p, synapse=synapse, need_aux=need_grad)
        ctx.p = p
        ctx.synapse = synapse
        ctx.in_shape = input_times.shape
        ctx.in_dtype = input_times.dtype
        ctx.backend = backend
        ctx.ev_type = type(ev)
        ctx.save_for_backward(weight, out_tc, out_win, out_x, counts, *ev)
        ctx.mark_non_differentiable(counts)
        return out_t.to(input_times.dtype), counts

    @staticmethod
    def backward(ctx, grad_times, grad_counts):
        if torch.is_grad_enabled():
            # backward(create_graph=True) / autograd.grad(..., create_graph=True): the BATS
            # gradient has no derivative of its own here, and a silently constant gradient
            # would drop a gradient penalty without a word
            raise RuntimeError(
                "batsnn's LIF layers have no second derivative: create_graph=True (double "
                "backward, gradient penalties) is not supported")
        weight, out_tc, out_win, out_x, counts, *ev = ctx.saved_tensors
        ev = ctx.ev_type(*ev)
        need_input, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_times is None or not (need_input or need_weight):
            return None, None, None, None, None
        g_sorted, g_w = ctx.backend.backward(
            grad_times, (out_tc, out_win, out_x, counts), ev, weight, ctx.p,
            synapse=ctx.synapse, need_input=need_input)
        g_input = None
        if need_input:
            shape = ctx.in_shape
            flat = torch.zeros((shape[0], shape[1:].numel()), dtype=g_sorted.dtype,
                               device=g_sorted.device)
            flat.scatter_add_(1, ev.perm, g_sorted)  # padding events add 0
            g_input = flat.reshape(shape).to(ctx.in_dtype)
        g_weight = g_w.to(weight.dtype) if need_weight else None
        return g_input, g_weight, None, None, None


def lif_op(input_times, weight, p: LIFParams, synapse=DENSE):
    """Unchecked op; see :func:`batsnn.functional.lif_linear` for the documented entry point."""
    need_grad = torch.is_grad_enabled() and (input_times.requires_grad or weight.requires_grad)
    return LIFFunction.apply(input_times, weight, p, synapse, need_grad)


def pool_reference(times: torch.Tensor, k: int) -> torch.Tensor:
    """Spike pooling in plain torch ops (any device, differentiable in ``times``): each
    ``k x k`` window's ``k * k * S`` slots of ``times (B, C, H, W, S)``, stably sorted,
    ``(B, C, H // k, W // k, k * k * S)``; see :func:`batsnn.functional.spike_pool2d`."""
    n_batch, c, h, w, s = times.shape
    ho, wo = h // k, w // k
    win = times[:, :, :ho * k, :wo * k].reshape(n_batch, c, ho, k, wo, k, s)
    win = win.permute(0, 1, 2, 4, 3, 5, 6).reshape(n_batch, c, ho, wo, k * k * s)
    return torch.sort(win, dim=-1, stable=True).values


def pool_op(times: torch.Tensor, k: int) -> torch.Tensor:
    """Unchecked spike pooling (:func:`batsnn.functional.spike_pool2d` checks): the
    backend's own kernel where it has one for ``times`` (its ``pool``), else
    :func:`pool_reference`; devices without a backend, and a GPU without Triton, get the
    torch ops."""
    try:
        backend = backend_for(times.device)
    except (RuntimeError, ValueError):  # no Triton, or a device batsnn has no kernels for
        backend = None
    pool = getattr(backend, "pool", None)
    pooled = pool(times, k) if pool is not None else None
    return pool_reference(times, k) if pooled is None else pooled
