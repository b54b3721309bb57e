"""Spike pooling on the GPU (Triton): the float32 twin of the torch ops of
:func:`batsnn.functional.spike_pool2d`.

Each output neuron's train is its ``k x k`` window's ``k * k * S`` input slots (``+inf``
padding included) in time order, ties in window order (row by row, then slot): a stable
sort of a short row, done in registers on 64-bit keys (the time's bits over the slot's
window position, as :mod:`.sort`), many rows per program. Every output slot is one input
slot, so the backward sends each output gradient to its slot (a permutation; input slots
outside every window, the last rows/columns of an odd map, get zero). Nothing here
synchronises the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Output neurons per program.
ROWS = 32


@triton.jit
def _pool_kernel(t_ptr, out_ptr, src_ptr, R, HO, WO, H, W, S, K: tl.constexpr,
                 L: tl.constexpr, LP: tl.constexpr, ROWS_: tl.constexpr):
    r = tl.program_id(0) * ROWS_ + tl.arange(0, ROWS_)[:, None]  # output neuron
    j = tl.arange(0, LP)[None, :]  # window slot: (dy, dx, s)
    bc = r // (HO * WO)
    rem = r - bc * (HO * WO)
    oy = rem // WO
    ox = rem - oy * WO
    dy = j // (K * S)
    dx = (j // S) % K
    s = j % S
    flat = ((bc.to(tl.int64) * H + oy * K + dy) * W + ox * K + dx) * S + s
    ok = (r < R) & (j < L)
    t = tl.load(t_ptr + flat, mask=ok, other=float("inf"))
    t = tl.where(t == 0.0, 0.0, t)  # -0.0 sorts as 0.0
    key = (t.to(tl.int32, bitcast=True).to(tl.int64) << 32) | j.to(tl.int64)
    key = tl.where(j < L, key, 0x7FFFFFFFFFFFFFFF)  # past the window: last
    key = tl.sort(key, dim=1)
    jj = key & 0xFFFFFFFF
    dy2 = jj // (K * S)
    dx2 = (jj // S) % K
    src = ((bc.to(tl.int64) * H + oy * K + dy2) * W + ox * K + dx2) * S + jj % S
    out = r.to(tl.int64) * L + j
    tl.store(out_ptr + out, (key >> 32).to(tl.int32).to(tl.float32, bitcast=True), mask=ok)
    tl.store(src_ptr + out, src, mask=ok)


def pool_sorted(times: torch.Tensor, k: int):
    """``times (B, C, H, W, S)`` float32 on the GPU (valid trains): ``(pooled (B, C, H // k,
    W // k, k * k * S), src)``, ``src`` each output slot's flat index in ``times``."""
    n_batch, c, h, w, s = times.shape
    ho, wo = h // k, w // k
    length = k * k * s
    x = times.detach().contiguous()
    out = torch.empty((n_batch, c, ho, wo, length), dtype=x.dtype, device=x.device)
    src = torch.empty(out.shape, dtype=torch.int64, device=x.device)
    rows = n_batch * c * ho * wo
    if rows and length:
        _pool_kernel[(triton.cdiv(rows, ROWS),)](
            x, out, src, rows, ho, wo, h, w, s, K=k, L=length,
            LP=triton.next_power_of_2(length), ROWS_=ROWS, num_warps=4)
    return out, src


class SpikePoolFunction(torch.autograd.Function):
    """Pooling as a permutation of input slots: forward :func:`pool_sorted`, backward each
    output slot's gradient to its input slot."""

    @staticmethod
    def forward(ctx, times, k):
        out, src = pool_sorted(times, k)
        ctx.save_for_backward(src)
        ctx.in_shape = times.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (src,) = ctx.saved_tensors
        g = torch.zeros(ctx.in_shape, dtype=grad.dtype, device=grad.device)
        g.view(-1).scatter_(0, src.reshape(-1), grad.reshape(-1))
        return g, None
