"""The recurrent LIF layer (docs/model.md, "Recurrent layers"): exact forward, BATS backward.

:mod:`.naive` is the plain float64 reference, :mod:`batsnn.ops.lif.cpu.recurrent` the numba
kernels (in the CPU kernel package, so that its on-disk cache follows the shared neuron core).
:class:`RecurrentFunction` runs the CPU kernels for CPU tensors; CUDA tensors are computed
by the same CPU kernels (copied to the host and the results moved back to the device), as
no GPU kernel of this layer exists yet: correct, but without a GPU speed-up.
"""

from __future__ import annotations

import torch

from batsnn.ops.lif.cpu import recurrent as cpu
from batsnn.params import LIFParams

__all__ = ["RecurrentFunction", "recurrent_op"]


class RecurrentFunction(torch.autograd.Function):
    """Exact forward and BATS backward of a recurrent layer of LIF neurons."""

    @staticmethod
    def forward(ctx, input_times, weight, recurrent_weight, p: LIFParams, need_grad=True):
        device = input_times.device
        host = torch.device("cpu")
        out_t, counts, saved = cpu.forward(input_times.to(host), weight.to(host),
                                           recurrent_weight.to(host), p, need_aux=need_grad)
        ctx.p = p
        ctx.in_shape = input_times.shape
        ctx.in_dtype = input_times.dtype
        ctx.device = device
        if need_grad:
            ctx.save_for_backward(weight, recurrent_weight, *saved)
        counts = counts.to(device)
        ctx.mark_non_differentiable(counts)
        return out_t.to(device=device, dtype=input_times.dtype), counts

    @staticmethod
    def backward(ctx, grad_times, grad_counts):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "batsnn's LIF layers have no second derivative: create_graph=True (double "
                "backward, gradient penalties) is not supported")
        need_in, need_w, need_r = ctx.needs_input_grad[:3]
        if grad_times is None or not (need_in or need_w or need_r):
            return None, None, None, None, None
        weight, recurrent_weight, *saved = ctx.saved_tensors
        host = torch.device("cpu")
        g_in, g_w, g_r = cpu.backward(grad_times.to(host), saved, tuple(ctx.in_shape),
                                      weight.to(host), recurrent_weight.to(host), ctx.p,
                                      need_input=need_in)
        dev = ctx.device
        return (g_in.to(device=dev, dtype=ctx.in_dtype) if need_in else None,
                g_w.to(device=dev, dtype=weight.dtype) if need_w else None,
                g_r.to(device=dev, dtype=recurrent_weight.dtype) if need_r else None,
                None, None)


def recurrent_op(input_times, weight, recurrent_weight, p: LIFParams):
    """Unchecked op; see :func:`batsnn.functional.lif_recurrent` for the documented entry
    point. Returns ``(times, counts)``."""
    need_grad = torch.is_grad_enabled() and (input_times.requires_grad or weight.requires_grad
                                             or recurrent_weight.requires_grad)
    return RecurrentFunction.apply(input_times, weight, recurrent_weight, p, need_grad)
