"""The LIF layer op: event sorting, backend kernels and one ``autograd.Function``.

Backends: ``naive`` (Python loops, tests only), ``cpu`` (numba) and ``cuda`` (GPU kernels,
optional). :func:`batsnn.functional.lif_linear` validates arguments and calls
:func:`lif_linear_op`.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from batsnn.ops.lif import cpu
from batsnn.ops.lif.events import SEGMENT, Events


def _backend(device: torch.device):
    if device.type == "cuda":
        try:
            from batsnn.ops.lif import cuda
        except ImportError as e:
            raise RuntimeError("batsnn's GPU kernels need Triton (bundled with PyTorch's CUDA "
                               f"builds; pip install triton): {e}") from e
        return cuda
    if device.type != "cpu":
        raise ValueError(f"batsnn runs on cpu or cuda tensors, got device {device}")
    return cpu


class LIFLinearFunction(torch.autograd.Function):
    """Exact forward and BATS backward of a dense LIF layer (model.md sections 1, 2, 6)."""

    @staticmethod
    def forward(ctx, input_times, weight, tau_s, theta, delta_theta, max_spikes, t_max, dt,
                need_grad=True):
        backend = _backend(input_times.device)
        ev = backend.sort_events(input_times, tau_s, t_max, SEGMENT * tau_s)
        out_t, out_tc, out_win, out_x, counts = backend.forward(
            ev, weight, tau_s=tau_s, theta=theta, delta_theta=delta_theta,
            max_spikes=max_spikes, t_max=t_max, dt=dt, need_aux=need_grad)
        ctx.params = (tau_s, theta, delta_theta, t_max, dt, input_times.shape,
                      input_times.dtype)
        ctx.backend = backend
        ctx.save_for_backward(weight, out_tc, out_win, out_x, counts, *ev)
        ctx.mark_non_differentiable(counts)
        return out_t.to(input_times.dtype), counts

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_times, grad_counts):
        tau_s, theta, delta_theta, t_max, dt, in_shape, in_dtype = ctx.params
        weight, out_tc, out_win, out_x, counts, *ev = ctx.saved_tensors
        ev = Events(*ev)
        need_input, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_times is None or not (need_input or need_weight):
            return (None,) * 9
        g_sorted, g_w = ctx.backend.backward(
            grad_times, (out_tc, out_win, out_x, counts), ev, weight,
            tau_s=tau_s, theta=theta, delta_theta=delta_theta, t_max=t_max, dt=dt,
            need_input=need_input)
        g_input = None
        if need_input:
            n_batch = in_shape[0]
            flat = torch.zeros((n_batch, in_shape[1] * in_shape[2]), dtype=g_sorted.dtype,
                               device=g_sorted.device)
            flat.scatter_add_(1, ev.perm, g_sorted)  # padding events add 0
            g_input = flat.reshape(in_shape).to(in_dtype)
        g_weight = g_w.to(weight.dtype) if need_weight else None
        return g_input, g_weight, None, None, None, None, None, None, None


def lif_linear_op(input_times, weight, tau_s, theta, delta_theta, max_spikes, t_max, dt):
    """Unchecked op; see :func:`batsnn.functional.lif_linear` for the documented entry point."""
    need_grad = torch.is_grad_enabled() and (input_times.requires_grad or weight.requires_grad)
    return LIFLinearFunction.apply(input_times, weight, tau_s, theta, delta_theta, max_spikes,
                                   t_max, dt, need_grad)
